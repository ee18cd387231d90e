#!/usr/bin/env bash
# The H100 lease of docs/TRAINING.md, in phases that fit the device tool's 10-minute commands:
#   bash scripts/gpu_lease.sh start     install carried wheels, record all 49 substrates on 16 cores,
#                                        start training in the background (setsid), return
#   bash scripts/gpu_lease.sh wait N    wait up to N seconds for training, print progress
#   bash scripts/gpu_lease.sh collect   evaluate, bundle and copy results to $OUT
# The machine has torch but not Melting Pot, PettingZoo or LMDB: their cp312 wheels travel in .whl/.
set -euo pipefail
ROOT=/tmp/ap
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
EPISODES=${EPISODES:-20}
STEPS=${STEPS:-300}
case "$1" in
  start)  # everything runs in a detached session, so a command's 10-minute limit never cuts it
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    mkdir -p $ROOT
    nproc; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
    setsid nohup bash scripts/gpu_lease.sh pipeline > $ROOT/pipeline.log 2>&1 < /dev/null &
    bash scripts/gpu_lease.sh wait "${2:-480}" ;;
  pipeline)
    date
    python3 -m training.record --out $ROOT/data --substrates all --episodes-per-substrate $EPISODES \
      --steps $STEPS --workers 16 --seed 0 > $ROOT/record.log 2>&1 || echo "record exited $?"
    date
    python3 -m training.dataset split $ROOT/data --val 2 --test 4 --workers 16 >> $ROOT/record.log 2>&1 || echo "split exited $?"
    date
    torchrun --standalone --nproc_per_node=1 -m training.train --config training/configs/h100.yaml > $ROOT/train.log 2>&1
    date; echo pipeline done ;;
  wait)
    end=$((SECONDS + ${2:-540}))
    while [ $SECONDS -lt $end ] && ! grep -q "pipeline done" $ROOT/pipeline.log; do sleep 15; done
    cat $ROOT/pipeline.log; grep -a "recorded\|failed\|Error" $ROOT/record.log | tail -8 || true
    tail -c 1200 $ROOT/train.log 2>/dev/null || true; tail -n 2 $ROOT/run/metrics.jsonl 2>/dev/null || true ;;
  collect)
    python3 -m training.bundle --run $ROOT/run --data $ROOT/data --out actionparty_env/checkpoints/default
    python3 -m training.evaluate --checkpoint actionparty_env/checkpoints/default --data $ROOT/data \
      --split test --out benchmarks/results/closed_loop_h100 2>&1 | tail -4
    mkdir -p $OUT/ckpt
    cp actionparty_env/checkpoints/default/* $OUT/ckpt/
    tar czf $OUT/results.tar.gz benchmarks/results $ROOT/run/metrics.jsonl $ROOT/record.log $ROOT/train.log \
      $(ls -d $ROOT/run/samples/* | tail -3)
    ls -la $OUT $OUT/ckpt ;;
esac
