#!/usr/bin/env bash
# Benchmarks of the bundled checkpoint on the H100 (device tool), one detached job polled back to back
# (an idle machine is given back after 30 s):
#   bash scripts/gpu_bench.sh start [SECONDS]   install carried wheels (.whl/), start the job, poll
#   bash scripts/gpu_bench.sh poll  [SECONDS]   poll; copy the results to $OUT
# The job records the held-out test split (disjoint seeds; the same command as scripts/gpu_lease.sh),
# then runs $PARTS (default: all three) of: the dream speed benchmark (speed), the closed-loop state
# evaluation (evaluate) and the pixel fidelity benchmark (fidelity, $EPISODES episodes per substrate).
set -uo pipefail
ROOT=/tmp/apb
COMMIT=${COMMIT:-unknown}
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 ACTIONPARTY_COMMIT=$COMMIT
CKPT=actionparty_env/checkpoints/default
stamp() { echo "[$(date +%T)] $*"; }
case "$1" in
  start)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    mkdir -p $ROOT/results
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
    setsid nohup bash scripts/gpu_bench.sh job > $ROOT/job.log 2>&1 < /dev/null &
    bash scripts/gpu_bench.sh poll "${2:-540}" ;;
  job)
    stamp record; python3 -m training.record --out $ROOT/data --substrates all --episodes-per-substrate 2 \
      --steps 300 --workers 16 --seed 0 --split test > $ROOT/record.log 2>&1
    for part in ${PARTS:-speed evaluate fidelity}; do
      stamp $part
      case $part in
        speed) python3 -m benchmarks.speed --device cuda --checkpoint $CKPT --batches 1 16 64 256 \
                 --out-dir $ROOT/results --tag h100 > $ROOT/speed.log 2>&1 ;;
        evaluate) python3 -m benchmarks.closed_loop --device cuda --checkpoint $CKPT --data $ROOT/data --split test \
                    --out $ROOT/results/closed_loop_h100 > $ROOT/evaluate.log 2>&1 ;;
        fidelity) python3 -m benchmarks.fidelity --device cuda --checkpoint $CKPT --data $ROOT/data --split test \
                    --episodes ${EPISODES:-1} --gifs 3 --out-dir $ROOT/results --tag h100 > $ROOT/fidelity.log 2>&1 ;;
      esac
    done
    stamp done ;;
  poll)
    end=$((SECONDS + ${2:-540}))
    while [ $SECONDS -lt $end ] && ! grep -q "\] done" $ROOT/job.log; do sleep 5; done
    cat $ROOT/job.log; tail -c 1500 $ROOT/speed.log 2>/dev/null; tail -c 2500 $ROOT/fidelity.log 2>/dev/null
    tar czf $OUT/results.tgz -C $ROOT results speed.log evaluate.log fidelity.log 2>/dev/null; ls -la $OUT; true ;;
esac
