#!/usr/bin/env bash
# The H100 leases of docs/TRAINING.md. A job runs detached (setsid), so the device tool's 10-minute
# command limit never cuts it; calls only start it and poll it, back to back (an idle machine is given
# back after 30 s and everything on it is lost).
#   bash scripts/gpu_lease.sh start JOB [SECONDS]   install carried wheels, start JOB, poll
#   bash scripts/gpu_lease.sh poll [SECONDS]         poll; copy finished results to $OUT
#   rl         the RL benchmark (benchmarks/rl.py) of $RL_GAMES on the bundled checkpoint, and start states.
#   dyna       PPO in the dream, real episodes recorded with it, the checkpoint trained on, RL again.
#   speed      the recorded step's GPU tests, then the dream's speed with and without the CUDA graph.
#   small      record, then the small CPU model (training/configs/small_fast.yaml), and the play loop's frame rate.
#   scenario   the RL benchmark of $RL_GAMES as focal players among rl_mix bots; beside it rl_mix data on 6 cores,
#              the small model trained on from its bundled weights, then its fidelity beside the bundled ones.
#   fair       the small model's batched speed and step profiles, then RL of $RL_GAMES among rl_mix bots at equal
#              timesteps ($RL_STEPS) and the small model trained on beside it.
#   compile    the recorded and compiled steps' GPU tests, then the speed of the small and default models with the
#              KV cache that no pass copies, eager layers and torch.compile'd ones; step profiles of the compiled step.
#   split      the recorded and compiled steps' GPU tests with the frame rows' unmasked attention, both models'
#              compiled speed and the default's step profile; then fair's RL of $RL_GAMES (issue 12).
#   fair-rl    fair's RL alone (no data, speed or small model): for a lease with little device time left.
#   grow       rl_mix data (clean_up's apples), the bundled checkpoint trained on with its codebook grown, the
#              small model anew; their fidelity and dynamics beside the bundled one.
# The training jobs first record all 49 substrates on 16 cores and the held-out splits. Then:
#   train      train the recipe (training/configs/h100.yaml) for $MINUTES, bundle it, evaluate it in
#              closed loop on the test split, measure its speed and its pixel fidelity.
#   ablations  the recipe and its two ablations (no spatial RoPE bias, no subject isolation), $BUDGET
#              steps each, one after the other; bundle them; pixel fidelity of the three and of the
#              bundled checkpoint on the same test episodes, in one table.
# $TRAIN_SET adds settings to every run (a dry run's batch_size=2).
# $RL_COMPILE=1 runs the RL benchmark's dream with compiled layers (benchmarks.rl --compile).
# $INIT (a checkpoint folder) continues training from its weights (the warm-up runs again); $STEPS sets
# max_steps. A CPU dry run of the plumbing: ROOT=/tmp/dry DEVICE=cpu CONFIG=training/configs/tiny.yaml
# SUBSTRATES=coins EPISODES=2 EPISODE_STEPS=20 BUDGET=4 bash scripts/gpu_lease.sh job-ablations
# The machine has torch but not Melting Pot, PettingZoo or LMDB: their cp312 wheels travel in .whl/.
# .whl/ (git-ignored) is made on the development machine: `bash scripts/gpu_wheels.sh` (14 wheels with pygame,
# 12 MiB; pinned to .venv's pip freeze; dmlab2d's cp312 wheel needs glibc >= 2.35).
set -uo pipefail
ROOT=${ROOT:-/tmp/ap}
CONFIG=${CONFIG:-training/configs/h100.yaml}
DEVICE=${DEVICE:-cuda}
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 ACTIONPARTY_COMMIT=${COMMIT:-unknown}
EPISODES=${EPISODES:-20}
EPISODE_STEPS=${EPISODE_STEPS:-300}
SUBSTRATES=${SUBSTRATES:-all}
MINUTES=${MINUTES:-11}
BUDGET=${BUDGET:-2400}
stamp() { echo "[$(date +%T)] $*"; }

record_episodes() {  # SUBSTRATES EPISODES STEPS: training episodes into $ROOT/data on $WORKERS (16) cores
  python3 -m training.record --out $ROOT/data --substrates $1 --episodes-per-substrate $2 --steps $3 \
    --workers ${WORKERS:-16} --seed 0 --policy ${POLICY:-mix} >> $ROOT/record.log 2>&1
}

split() {  # the held-out splits of $ROOT/data: 1 validation and $TEST test episodes per substrate
  stamp split; python3 -m training.heldout $ROOT/data --val 1 --test ${TEST:-2} --workers ${WORKERS:-16} >> $ROOT/record.log 2>&1
  grep -a "^recorded\|failed" $ROOT/record.log | tail -6
}

record() { stamp record; record_episodes $SUBSTRATES $EPISODES $EPISODE_STEPS; split; }

train() {  # NAME [KEY=VALUE...]: train into $ROOT/NAME, bundle into $ROOT/ckpt_NAME
  local name=$1; shift
  torchrun --standalone --nproc_per_node=1 -m training.train --config $CONFIG \
    --set out=$ROOT/$name data=$ROOT/data ${INIT:+init_from=$INIT} ${STEPS:+max_steps=$STEPS} "$@" ${TRAIN_SET:-} > $ROOT/$name.log 2>&1
  python3 -m training.bundle --run $ROOT/$name --data $ROOT/data --out $ROOT/ckpt_$name > $ROOT/bundle_$name.log 2>&1
  stamp "trained $name: $(tail -c 200 $ROOT/$name.log | tr '\r' '\n' | tail -n 2 | tr '\n' ' ')"
}

rl_game() {  # GAME DREAM_WORLDS CHECKPOINT WORK TAG: the RL benchmark's two arms in parallel, then the scores
  local g=$1 w=$2 ck=$3 work=$4 tag=$5
  local rl="--game $g --dream-worlds $w --checkpoint $ck --timesteps ${RL_STEPS:-1000000} --episode ${RL_EPISODE:-200} ${RL_ROLLOUT:+--rollout $RL_ROLLOUT}
    --real-worlds ${REAL_WORLDS:-8} --eval-episodes ${EVAL_EPISODES:-32} --device $DEVICE --work $work
    --out-dir $ROOT/results --tag $tag ${NO_GRAPH:+--no-cuda-graph} ${RL_COMPILE:+--compile} ${RL_BACKGROUND:+--background $RL_BACKGROUND} ${RL_FOCAL:+--focal $RL_FOCAL}"
  for arm in dream real; do
    python3 -m benchmarks.rl $rl --train $arm --no-score --max-minutes ${RL_MINUTES:-12} > $ROOT/rl_${tag}_${g}_$arm.log 2>&1 &
  done
  wait
  python3 -m benchmarks.rl $rl --train > $ROOT/rl_${tag}_${g}_score.log 2>&1
}

rl_games() {  # TAG: rl_game for each GAME:DREAM_WORLDS:FOCAL of $RL_GAMES on the bundled checkpoint, in the background
  local gwk g w k
  for gwk in $RL_GAMES; do
    IFS=: read -r g w k <<< "$gwk"
    RL_FOCAL=${k:-1} rl_game $g $w $PWD/actionparty_env/checkpoints/default $ROOT/rl $1 &
  done
}

fair_rl() {  # job-fair's RL in the background: $RL_GAMES among $RL_BACKGROUND (rl_mix) bots, $RL_STEPS timesteps an arm
  export RL_BACKGROUND=${RL_BACKGROUND:-rl_mix}
  stamp "rl: $RL_GAMES among $RL_BACKGROUND, $RL_STEPS timesteps an arm"
  rl_games ${TAG:-h200_fair}
}

small_trained_on() {  # TAG STEPS MINUTES LR [KEY=VALUE...]: the bundled small model trained on $ROOT/data, then
  # its pixel fidelity beside the bundled small and default ones
  local tag=$1 steps=$2 minutes=$3 lr=$4 small=$PWD/actionparty_env/checkpoints/small; shift 4
  CONFIG=training/configs/small_fast.yaml INIT=$small STEPS=$steps train small \
    max_minutes=$minutes lr=$lr warmup_steps=100 "$@"
  game_tables small
  grep -a "codes of the data added" $ROOT/small.log
  stamp "fidelity of the small models"
  fidelity ${tag}_small $ROOT/ckpt_small small_before=$small default=$PWD/actionparty_env/checkpoints/default
}

game_tables() {  # NAME: the default's start states and view tables (facts of the games) into $ROOT/ckpt_NAME, digests anew
  cp actionparty_env/checkpoints/default/view_tables.npz actionparty_env/checkpoints/default/start_states.npz $ROOT/ckpt_$1/
  python3 -m training.bundle --refresh-digests $ROOT/ckpt_$1 >> $ROOT/bundle_$1.log 2>&1
}

fidelity() {  # TAG CHECKPOINT [NAME=DIR...]: pixel fidelity on the test split, one episode per substrate
  local tag=$1 ckpt=$2; shift 2
  python3 -m benchmarks.fidelity --device $DEVICE --checkpoint $ckpt "${@/#/--ablation=}" --data $ROOT/data \
    --split test --episodes 1 --gifs 3 --cache $ROOT/cache --out-dir $ROOT/results --tag $tag > $ROOT/fidelity_$tag.log 2>&1
}

speed_graph_and_eager() {  # the dream's speed with and without the CUDA graph; SPEED_SECONDS=0 leaves it out
  for graph in "" --no-cuda-graph; do
    [ "${SPEED_SECONDS:-4}" = 0 ] && break
    stamp "speed $graph"; python3 -m benchmarks.speed --device $DEVICE --batches ${SPEED_BATCHES:-1 16 64 256 1024} --peak-tflops 790 \
      --max-seconds ${SPEED_SECONDS:-4} --substrates ${SPEED_SUBSTRATES:-coins clean_up} --out-dir $ROOT/results \
      --tag ${SPEED_TAG:-h200_graph}${graph:+_off} $graph >> $ROOT/speed.log 2>&1
  done
}

case "$1" in
  start)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    mkdir -p $ROOT/results
    nproc; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
    # The job runs from its own copy of the tree: every device call re-sends the tree, and a process that
    # starts while it is being replaced finds no modules (the RL scoring of 2026-12-01 did).
    rm -rf $ROOT/code && cp -rL . $ROOT/code && rm -rf $ROOT/code/.whl
    (cd $ROOT/code && setsid nohup bash scripts/gpu_lease.sh job-$2 > $ROOT/job.log 2>&1 < /dev/null &)
    bash scripts/gpu_lease.sh poll "${3:-540}" ;;
  job-train)
    record
    stamp train; train main max_minutes=$MINUTES
    stamp evaluate; python3 -m benchmarks.closed_loop --device $DEVICE --checkpoint $ROOT/ckpt_main --data $ROOT/data \
      --split test --out $ROOT/results/closed_loop_h100 > $ROOT/evaluate.log 2>&1
    stamp speed; python3 -m benchmarks.speed --device $DEVICE --checkpoint $ROOT/ckpt_main --batches 1 16 64 256 \
      --out-dir $ROOT/results --tag h100 > $ROOT/speed.log 2>&1
    stamp fidelity; fidelity h100 $ROOT/ckpt_main
    stamp done ;;
  job-ablations)
    record
    # The same budget for the three: $BUDGET steps (the cosine schedule and self-forcing scale with it);
    # the time cap only guards the lease. One run at a time: three at once ran out of the H100's memory.
    # Each checkpoint is dreamed on the test episodes (rollouts into the cache) while the next one trains.
    stamp "train x3, $BUDGET steps each"
    # The reference is the recipe plus frame occupancy and full-mask training (docs/TRAINING.md, "Ablations").
    common="max_steps=$BUDGET max_minutes=${CAP:-7} eval_every=$BUDGET ckpt_every=500 model.frame_occupancy=true full_mask_prob=0.3"
    fidelity one_bundled $PWD/actionparty_env/checkpoints/default &
    train main $common; fidelity one_main $ROOT/ckpt_main &
    train no_rope $common model.spatial_rope=false; fidelity one_no_rope $ROOT/ckpt_no_rope &
    train no_isolation $common model.subject_isolation=false; fidelity one_no_isolation $ROOT/ckpt_no_isolation
    wait
    stamp "fidelity, all together"
    fidelity h100_ablations $ROOT/ckpt_main no_rope=$ROOT/ckpt_no_rope no_isolation=$ROOT/ckpt_no_isolation \
      bundled_v1=$PWD/actionparty_env/checkpoints/default
    stamp done ;;
  job-dynamics)
    # The game-dynamics checkpoint (issues 12 and 13): data from the rl_mix behaviours (POLICY=rl_mix),
    # the recipe with the new heads (CONFIG=training/configs/h200.yaml), then in parallel on the one GPU:
    # closed-loop states, world dynamics (the new checkpoint beside the bundled one) and pixel fidelity.
    record
    stamp train; train main max_minutes=$MINUTES
    cp actionparty_env/checkpoints/default/view_tables.npz $ROOT/ckpt_main/  # a fact of the games, not of the model
    python3 -m training.bundle --refresh-digests $ROOT/ckpt_main >> $ROOT/bundle_main.log 2>&1
    stamp "evaluate, dynamics, fidelity"
    python3 -m benchmarks.closed_loop --device $DEVICE --checkpoint $ROOT/ckpt_main --data $ROOT/data --split test \
      --out $ROOT/results/closed_loop_${TAG:-h200} > $ROOT/evaluate.log 2>&1 &
    python3 -m benchmarks.dynamics --device $DEVICE --checkpoint $ROOT/ckpt_main --compare bundled_v1=$PWD/actionparty_env/checkpoints/default \
      --data $ROOT/data --split test --episodes 2 --steps ${DYN_STEPS:-100} --out-dir $ROOT/results --tag ${TAG:-h200} > $ROOT/dynamics.log 2>&1 &
    python3 -m benchmarks.dynamics --device $DEVICE --checkpoint $ROOT/ckpt_main --decoding argmax --data $ROOT/data \
      --split test --episodes 2 --steps ${DYN_STEPS:-100} --out-dir $ROOT/results --tag ${TAG:-h200}_argmax > $ROOT/dynamics_argmax.log 2>&1 &
    fidelity ${TAG:-h200} $ROOT/ckpt_main
    wait
    stamp done ;;
  job-rl)
    # Issue 12's RL benchmark on the bundled checkpoint: for each game of $RL_GAMES, PPO trained in the
    # dream and in the real game as two parallel processes (the dream arms share the GPU), then every
    # arm scored in the real game and in the dream. Meanwhile $STARTS_EPISODES validation episodes per
    # substrate are recorded on 6 cores for the bundle's start states (issue 15). Then the dream's speed.
    stamp "record start states"
    (python3 -m training.record --out $ROOT/starts --substrates all --episodes-per-substrate ${STARTS_EPISODES:-16} \
      --steps 60 --split val --workers 6 --seed 7000 > $ROOT/starts.log 2>&1
     mkdir -p $ROOT/ckpt_starts && cp actionparty_env/checkpoints/default/* $ROOT/ckpt_starts/ && \
     python3 -m training.bundle --starts $ROOT/starts --out $ROOT/ckpt_starts >> $ROOT/starts.log 2>&1; stamp "start states bundled") &
    # $RL_GAMES: GAME:DREAM_WORLDS pairs (fewer dream worlds where more players fill the slots)
    stamp "rl: $RL_GAMES"
    for gw in $RL_GAMES; do rl_game ${gw%:*} ${gw#*:} $PWD/actionparty_env/checkpoints/default $ROOT/rl ${TAG:-h200} & done
    wait
    stamp speed; python3 -m benchmarks.speed --device $DEVICE --batches 1 16 64 256 --out-dir $ROOT/results \
      --tag ${TAG:-h200} > $ROOT/speed.log 2>&1
    stamp done ;;
  job-eval)
    # The recorded step checked on the GPU first (NO_GRAPH=1 steps the dream eagerly where it fails); then
    # the RL benchmark of $RL_GAMES alone on the bundled checkpoint, beside it one fresh test episode per
    # substrate recorded on 4 cores (the test split's own seeds); then the bundled checkpoint's pixel
    # fidelity and world dynamics on them; last the dream's speed with and without the CUDA graph.
    stamp "recorded step on the GPU"
    python3 -m pytest -q -p no:cacheprovider tests/test_step_speed.py -k recorded > $ROOT/graph_test.log 2>&1 || export NO_GRAPH=1
    tail -n 3 $ROOT/graph_test.log
    (python3 -m training.record --out $ROOT/data --substrates all --episodes-per-substrate 1 --steps $EPISODE_STEPS \
      --split test --workers 4 --seed 0 --policy rl_mix > $ROOT/record.log 2>&1; stamp "test split recorded") &
    stamp "rl: $RL_GAMES${NO_GRAPH:+ (no CUDA graph)}"
    for gw in $RL_GAMES; do rl_game ${gw%:*} ${gw#*:} $PWD/actionparty_env/checkpoints/default $ROOT/rl ${TAG:-h200_eval} & done
    wait
    stamp "fidelity and dynamics of the bundled checkpoint"
    fidelity ${TAG:-h200_eval} $PWD/actionparty_env/checkpoints/default &
    python3 -m benchmarks.dynamics --device $DEVICE --data $ROOT/data --split test --episodes 1 --steps ${DYN_STEPS:-100} \
      --out-dir $ROOT/results --tag ${TAG:-h200_eval} > $ROOT/dynamics.log 2>&1 &
    wait
    speed_graph_and_eager
    stamp done ;;
  job-speed)
    # The recorded step checked on the GPU, then the dream's speed with and without the CUDA graph.
    stamp "recorded step on the GPU"
    python3 -m pytest -q -p no:cacheprovider tests/test_step_speed.py -k recorded > $ROOT/graph_test.log 2>&1
    tail -n 15 $ROOT/graph_test.log
    speed_graph_and_eager
    stamp done ;;
  job-dyna)
    # The Dyna / DreamerV3 loop against what PPO exploits in the dream (issue 12). For each GAME:WORLDS of
    # $DYNA_GAMES: PPO trained in the bundled dream; real episodes recorded with it ($DYNA_EPISODES,
    # `--policy sb3:`: half the players follow it, the rest rl_mix) while the other substrates are recorded
    # with rl_mix; the bundled checkpoint trained on further ($STEPS steps at most $MINUTES, a lower peak
    # rate: it starts trained) on that data and bundled; then the RL benchmark of every game of
    # $DYNA_GAMES on it, all at once ($RL_FIRST=1: the first game only), and, where TEST=1 held one episode
    # per substrate out, pixel fidelity and dynamics on that test split beside the bundled checkpoint;
    # last the dream's speed and the play loop's frame rate on the bundled checkpoint.
    games=${DYNA_GAMES:-commons_harvest__open:32 coins:64}
    names=$(for gw in $games; do printf '%s ' ${gw%:*}; done)
    stamp "dream PPO on $names"
    for gw in $games; do
      python3 -m benchmarks.rl --game ${gw%:*} --dream-worlds ${gw#*:} --timesteps ${DYNA_STEPS:-500000} --curve-points 0 \
        --episode ${RL_EPISODE:-200} ${RL_ROLLOUT:+--rollout $RL_ROLLOUT} \
        --train dream --no-score --max-minutes ${DYNA_MINUTES:-6} --device $DEVICE --work $ROOT/rl0 > $ROOT/rl0_${gw%:*}.log 2>&1 &
    done
    others=$(python3 -c "import sys; from actionparty_env.games import load_catalog; print(','.join(n for n in load_catalog() if n not in sys.argv[1:]))" $names)
    python3 -m training.record --out $ROOT/data --substrates ${OTHERS:-$others} --episodes-per-substrate $EPISODES \
      --steps $EPISODE_STEPS --workers 12 --seed 0 --policy rl_mix > $ROOT/record.log 2>&1
    wait
    stamp "record $names with their dream-trained policies"
    for g in $names; do
      python3 -m training.record --out $ROOT/data --substrates $g --episodes-per-substrate ${DYNA_EPISODES:-60} \
        --steps $EPISODE_STEPS --workers 16 --seed 0 --policy sb3:$ROOT/rl0/$g/dream.zip >> $ROOT/record.log 2>&1
    done
    python3 -m training.heldout $ROOT/data --val 1 --test ${TEST:-0} --workers 16 >> $ROOT/record.log 2>&1
    grep -a "^recorded\|failed" $ROOT/record.log | tail -8
    # The small CPU model (issue 14) trains from scratch on the same data, beside it on the one GPU, for its
    # own config's max_steps ($SMALL_STEPS sets it; $STEPS is the fine-tune's: the lease of 2026-12-01 (4)
    # leaked it into the small model, which stopped at 2,000 steps) or $SMALL_MINUTES: it may go on
    # through the RL stage, which leaves most of the GPU idle.
    stamp "train, and the small model"
    (CONFIG=${SMALL_CONFIG:-training/configs/small_fast.yaml} STEPS=${SMALL_STEPS:-} train small max_minutes=${SMALL_MINUTES:-$MINUTES}) &
    small=$!
    INIT=$PWD/actionparty_env/checkpoints/default STEPS=${STEPS:-3000} train main max_minutes=$MINUTES \
      lr=${LR:-3.0e-4} warmup_steps=100
    game_tables main
    rl_games=$([ -n "${RL_FIRST:-}" ] && echo ${games%% *} || echo $games)
    stamp "rl on the new checkpoint: $rl_games"
    for gw in $rl_games; do
      RL_STEPS=${DYNA_STEPS:-500000} rl_game ${gw%:*} ${gw#*:} $ROOT/ckpt_main $ROOT/rl1 ${TAG:-h200_dyna} &
    done
    if [ "${TEST:-0}" -gt 0 ]; then
      fidelity ${TAG:-h200_dyna} $ROOT/ckpt_main bundled=$PWD/actionparty_env/checkpoints/default &
      python3 -m benchmarks.dynamics --device $DEVICE --checkpoint $ROOT/ckpt_main --compare bundled=$PWD/actionparty_env/checkpoints/default \
        --data $ROOT/data --split test --episodes 1 --steps ${DYN_STEPS:-100} --out-dir $ROOT/results --tag ${TAG:-h200_dyna} > $ROOT/dynamics.log 2>&1 &
    fi
    wait $(jobs -p | grep -vx $small)
    stamp "rl done"
    wait $small
    # SPEED_SECONDS=0 leaves the speed benchmark out (speed_h200.md has the step's figures).
    [ "${SPEED_SECONDS:-8}" != 0 ] && stamp speed && python3 -m benchmarks.speed --device $DEVICE --batches ${SPEED_BATCHES:-1 16 64 256 1024} --peak-tflops 790 \
      --max-seconds ${SPEED_SECONDS:-8} --substrates ${SPEED_SUBSTRATES:-coins clean_up} --out-dir $ROOT/results --tag h200 > $ROOT/speed.log 2>&1
    # The play loop's frame rate only where pygame travelled (PLAY=1 bash scripts/gpu_wheels.sh) and PLAY_STEPS > 0.
    [ "${PLAY_STEPS:-0}" -gt 0 ] && SDL_VIDEODRIVER=dummy python3 -m benchmarks.play_speed --device $DEVICE --substrates coins clean_up \
      --steps $PLAY_STEPS --out-dir $ROOT/results --tag h200 > $ROOT/play_speed.log 2>&1
    stamp done ;;
  job-grow)
    # Issue 12, clean_up's apples: every substrate recorded with rl_mix (whose cleaners make clean_up's
    # apples grow), clean_up with $CLEAN_UP_EPISODES longer episodes; the bundled checkpoint trained on
    # ($STEPS at most $MINUTES) with its codebook grown by the patches it lacks (training/tables.py
    # grow_codebook: the clean_up apple), the small model from scratch beside it; then pixel fidelity and
    # dynamics of both on the fresh test split beside the bundled checkpoint.
    export POLICY=rl_mix
    others=$(python3 -c "from actionparty_env.games import load_catalog; print(','.join(n for n in load_catalog() if n != 'clean_up'))")
    stamp record; record_episodes ${OTHERS:-$others} $EPISODES $EPISODE_STEPS
    record_episodes clean_up ${CLEAN_UP_EPISODES:-48} ${CLEAN_UP_STEPS:-400}
    TEST=${TEST:-1} split
    stamp "train, and the small model"
    (CONFIG=training/configs/small_fast.yaml STEPS= train small max_minutes=${SMALL_MINUTES:-$MINUTES}) &
    INIT=$PWD/actionparty_env/checkpoints/default STEPS=${STEPS:-2000} train main max_minutes=$MINUTES \
      lr=${LR:-2.0e-4} warmup_steps=100
    wait
    game_tables main; game_tables small
    grep -a "codes of the data added" $ROOT/main.log
    stamp "fidelity and dynamics"
    fidelity ${TAG:-h200_grow} $ROOT/ckpt_main bundled=$PWD/actionparty_env/checkpoints/default small=$ROOT/ckpt_small &
    python3 -m benchmarks.dynamics --device $DEVICE --checkpoint $ROOT/ckpt_main --compare bundled=$PWD/actionparty_env/checkpoints/default \
      --compare small=$ROOT/ckpt_small --data $ROOT/data --split test --episodes 1 --steps ${DYN_STEPS:-100} --out-dir $ROOT/results \
      --tag ${TAG:-h200_grow} > $ROOT/dynamics.log 2>&1 &
    wait
    stamp done ;;
  job-scenario)
    # Issue 12 in Melting Pot's scenario form: for each GAME:DREAM_WORLDS:FOCAL of $RL_GAMES the RL
    # benchmark's arms trained and scored as FOCAL players per world among rl_mix bots (RL_BACKGROUND,
    # default rl_mix), all games at once. Beside them (issue 14) rl_mix data on $WORKERS (6) cores with one test episode
    # per substrate, the bundled small model trained on from its weights (its codebook grown) for
    # $SMALL_STEPS at most $SMALL_MINUTES; then its pixel fidelity beside the bundled small and default ones.
    export POLICY=rl_mix RL_BACKGROUND=${RL_BACKGROUND:-rl_mix}
    stamp "rl: $RL_GAMES among $RL_BACKGROUND"
    rl_games ${TAG:-h200_scenario}
    stamp record; WORKERS=${WORKERS:-6} record_episodes $SUBSTRATES $EPISODES $EPISODE_STEPS
    WORKERS=${WORKERS:-6} TEST=1 split
    stamp "train small"
    small_trained_on ${TAG:-h200_scenario} ${SMALL_STEPS:-6000} ${SMALL_MINUTES:-9} ${LR:-5.0e-4}
    wait
    stamp done ;;
  job-fair)
    # Issue 12 at equal budgets: each GAME:DREAM_WORLDS:FOCAL of $RL_GAMES among rl_mix bots, both arms
    # trained for $RL_STEPS timesteps ($RL_MINUTES only guards the lease), all games at once. First, on the
    # idle GPU (issue 14), the small model's batched speed and where a batched step's time goes, with
    # rl_mix data recorded beside on $WORKERS (12) cores; then, beside the RL, the small model trained on
    # and its pixel fidelity beside the bundled small and default ones.
    export POLICY=rl_mix
    stamp record; (WORKERS=${WORKERS:-12} record_episodes $SUBSTRATES $EPISODES $EPISODE_STEPS; WORKERS=${WORKERS:-12} TEST=1 split) &
    stamp "speed of the small model"
    python3 -m benchmarks.speed --device $DEVICE --checkpoint small --batches ${SPEED_BATCHES:-1 16 64 256 1024 4096} \
      --peak-tflops 790 --max-seconds 3 --substrates coins clean_up commons_harvest__open --out-dir $ROOT/results \
      --tag h200_small > $ROOT/speed.log 2>&1
    stamp "step profiles"
    python3 -m benchmarks.step_profile --device $DEVICE --worlds 256 --out-dir $ROOT/results --tag h200_default >> $ROOT/speed.log 2>&1
    python3 -m benchmarks.step_profile --device $DEVICE --checkpoint small --worlds 1024 --out-dir $ROOT/results --tag h200_small >> $ROOT/speed.log 2>&1
    wait
    fair_rl
    stamp "train small"
    small_trained_on ${TAG:-h200_fair} ${SMALL_STEPS:-8000} ${SMALL_MINUTES:-10} ${LR:-3.0e-4} workers=4
    wait
    stamp done ;;
  job-compile)
    # Issue 14: the recorded step and the compiled one checked on the GPU; then each model's speed with the KV
    # cache that no pass copies, its layers eager and through torch.compile; then the compiled step's profiles.
    stamp "recorded and compiled steps on the GPU"
    python3 -m pytest -q -p no:cacheprovider tests/test_step_speed.py -k "recorded or compiled" > $ROOT/graph_test.log 2>&1
    tail -n 3 $ROOT/graph_test.log
    for model in small default; do
      for compiled in "" --compile; do
        stamp "speed $model $compiled"
        python3 -m benchmarks.speed --device $DEVICE --checkpoint $model --peak-tflops 790 --max-seconds 3 \
          --batches $([ $model = small ] && echo 1 64 256 1024 || echo 1 256) --substrates coins clean_up \
          $([ $model = small ] && echo commons_harvest__open) --out-dir $ROOT/results \
          --tag h200_${model}_cache${compiled:+_compile} $compiled >> $ROOT/speed.log 2>&1
      done
    done
    stamp "step profiles, compiled"
    python3 -m benchmarks.step_profile --device $DEVICE --checkpoint small --worlds 1024 --compile --out-dir $ROOT/results \
      --tag h200_small_compile >> $ROOT/speed.log 2>&1
    python3 -m benchmarks.step_profile --device $DEVICE --worlds 256 --compile --out-dir $ROOT/results \
      --tag h200_default_compile >> $ROOT/speed.log 2>&1
    stamp done ;;
  job-split)
    # Issue 14: the frame rows attend without a mask (attention.attend), checked on the GPU (the recorded step
    # replays the eager one, compiled or not), then both models' compiled speed and the default's profile on the
    # idle GPU; then issue 12's RL of $RL_GAMES among rl_mix bots (fair_rl), a few games at a larger budget.
    stamp "recorded and compiled steps on the GPU"
    python3 -m pytest -q -p no:cacheprovider tests/test_step_speed.py -k "recorded or compiled" > $ROOT/graph_test.log 2>&1
    tail -n 3 $ROOT/graph_test.log
    for model in small default; do
      stamp "speed $model, compiled"
      python3 -m benchmarks.speed --device $DEVICE --checkpoint $model --peak-tflops 790 --max-seconds 3 --compile \
        --batches $([ $model = small ] && echo 1 64 256 1024 || echo 1 256) --substrates coins clean_up \
        $([ $model = small ] && echo commons_harvest__open) --out-dir $ROOT/results --tag h200_${model}_split >> $ROOT/speed.log 2>&1
    done
    stamp "step profile, compiled"
    python3 -m benchmarks.step_profile --device $DEVICE --worlds 256 --compile --out-dir $ROOT/results \
      --tag h200_default_split >> $ROOT/speed.log 2>&1
    RL_COMPILE=${RL_COMPILE:-1} fair_rl
    wait
    stamp done ;;
  job-fair-rl)
    # job-fair's RL alone (a lease with little device time left): no data to record, as the RL needs none.
    fair_rl
    wait
    stamp done ;;
  job-small)
    # The small CPU model alone (issue 14): record, train training/configs/small_fast.yaml for $MINUTES, bundle.
    # Meanwhile the play loop's frame rate on the GPU with the bundled checkpoint (the note says so).
    record
    stamp "train small, play loop"
    SDL_VIDEODRIVER=dummy python3 -m benchmarks.play_speed --device $DEVICE --substrates coins clean_up --steps ${PLAY_STEPS:-40} \
      --out-dir $ROOT/results --tag h200 --note "${PLAY_NOTE:-}" > $ROOT/play_speed.log 2>&1 &
    CONFIG=training/configs/small_fast.yaml train small max_minutes=$MINUTES
    wait
    stamp done ;;
  poll)
    # A bare machine (the lease went back while no call came, e.g. an interrupted turn) has no job to wait on.
    [ -f $ROOT/job.log ] || { echo "poll: no job on this machine ($ROOT/job.log missing): the lease was lost"; exit 3; }
    end=$((SECONDS + ${2:-540}))
    while [ $SECONDS -lt $end ] && ! grep -q "\] done" $ROOT/job.log; do sleep 10; done
    cat $ROOT/job.log; for f in $ROOT/*.log; do echo "== $f"; tail -c 300 $f | tr '\r' '\n' | tail -n 2; done
    # Every poll brings back the results and logs so far (small), so a lease lost between calls loses only
    # what came after its last poll; PACK=1 packs the rest too (a lease about to end).
    tar czf $OUT/results_so_far.tgz -C $ROOT results $(cd $ROOT && ls *.log 2>/dev/null)
    if grep -q "\] done" $ROOT/job.log || [ -n "${PACK:-}" ]; then
      rm -f $OUT/results_so_far.tgz  # results.tgz below holds it all
      [ -f $ROOT/ckpt_starts/start_states.npz ] && cp $ROOT/ckpt_starts/start_states.npz $OUT/
      # At most 8 files of 16 MiB come back: the shards one by one, the checkpoint's small files in one tar.
      [ -d $ROOT/ckpt_main ] && mkdir -p $OUT/ckpt && cp $ROOT/ckpt_main/model-*.safetensors $OUT/ckpt/ && \
        tar czf $OUT/ckpt_rest.tgz -C $ROOT/ckpt_main --exclude='model-*' --exclude=view_tables.npz .
      [ -d $ROOT/ckpt_small ] && tar czf $OUT/ckpt_small.tgz -C $ROOT/ckpt_small --exclude=view_tables.npz --exclude=start_states.npz .
      tar czf $OUT/results.tgz -C $ROOT --exclude='*.pt' --exclude='*.safetensors' --exclude='start_states.npz' \
        results $(cd $ROOT && ls -d *.log main small no_rope no_isolation 2>/dev/null)
    fi
    ls -la $OUT $OUT/ckpt 2>/dev/null; true ;;
esac
