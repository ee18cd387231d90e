#!/usr/bin/env bash
# The H100 lease of docs/TRAINING.md. The whole job runs detached (setsid), so the device tool's
# 10-minute command limit never cuts it; calls only start it and poll it, back to back (an idle
# machine is given back after 30 s and everything on it is lost).
#   bash scripts/gpu_lease.sh start [SECONDS]   install carried wheels, start the job, poll
#   bash scripts/gpu_lease.sh poll  [SECONDS]   poll; copy finished results to $OUT
# The job: record all 49 substrates on 16 cores, the held-out splits, train (training/configs/h100.yaml),
# bundle the checkpoint, evaluate it in closed loop on the test split, measure dream speed.
# The machine has torch but not Melting Pot, PettingZoo or LMDB: their cp312 wheels travel in .whl/.
set -uo pipefail
ROOT=/tmp/ap
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
EPISODES=${EPISODES:-20}
STEPS=${STEPS:-300}
MINUTES=${MINUTES:-11}
stamp() { echo "[$(date +%T)] $*"; }
case "$1" in
  start)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    mkdir -p $ROOT
    nproc; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; git rev-parse --short HEAD || true
    setsid nohup bash scripts/gpu_lease.sh job > $ROOT/job.log 2>&1 < /dev/null &
    bash scripts/gpu_lease.sh poll "${2:-540}" ;;
  job)
    stamp record; python3 -m training.record --out $ROOT/data --substrates all --episodes-per-substrate $EPISODES \
      --steps $STEPS --workers 16 --seed 0 > $ROOT/record.log 2>&1
    stamp split; python3 -m training.dataset split $ROOT/data --val 1 --test 2 --workers 16 >> $ROOT/record.log 2>&1
    grep -a "^recorded\|failed" $ROOT/record.log | tail -6
    stamp train; torchrun --standalone --nproc_per_node=1 -m training.train --config training/configs/h100.yaml \
      --set max_minutes=$MINUTES > $ROOT/train.log 2>&1
    tail -c 300 $ROOT/train.log
    stamp bundle; python3 -m training.bundle --run $ROOT/run --data $ROOT/data --out $ROOT/ckpt 2>&1 | tail -3
    stamp evaluate; python3 -m training.evaluate --checkpoint $ROOT/ckpt --data $ROOT/data --split test \
      --out $ROOT/results/closed_loop_h100 2>&1 | tail -4
    if [ -f benchmarks/speed.py ]; then
      stamp speed; python3 -m benchmarks.speed --device cuda --checkpoint $ROOT/ckpt --out-dir $ROOT/results 2>&1 | tail -15
    fi
    stamp done ;;
  poll)
    end=$((SECONDS + ${2:-540}))
    while [ $SECONDS -lt $end ] && ! grep -q "\] done" $ROOT/job.log; do sleep 10; done
    cat $ROOT/job.log; tail -c 400 $ROOT/train.log 2>/dev/null; echo
    tail -n 1 $ROOT/run/metrics.jsonl 2>/dev/null
    [ -d $ROOT/ckpt ] && mkdir -p $OUT/ckpt && cp $ROOT/ckpt/* $OUT/ckpt/
    [ -f $ROOT/run/metrics.jsonl ] && tar czf $OUT/run.tgz -C $ROOT run/metrics.jsonl run/samples run/tb record.log \
      train.log $( [ -d $ROOT/results ] && echo results ) 2>/dev/null
    ls -la $OUT $OUT/ckpt 2>/dev/null; true ;;
esac
