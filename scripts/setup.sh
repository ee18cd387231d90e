#!/usr/bin/env bash
# Set up a Python environment for ActionParty-Env on a fresh machine (used by README and .ci/run).
#
#   bash scripts/setup.sh [VENV_DIR]      # default .venv
#
# 1. a virtual env (python3 -m venv, Python >= 3.11);
# 2. torch, CPU build, unless a torch >= 2.11 is already there: `torch==2.13.0` resolves to the
#    2.13.0+cpu wheel that lies in this machine's pip find-links (/opt/wheels); elsewhere point pip
#    at a CPU wheel (TORCH_SPEC, PIP_INDEX_URL) or a plain `torch` from PyPI is a multi-GB CUDA build;
# 3. this package, editable, with the meltingpot, training, RL, development and play (pygame) extras;
# 4. Melting Pot without TensorFlow or its assets download (scripts/install_meltingpot.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PY="$VENV/bin/python"
"$PY" -c 'import sys; assert sys.version_info >= (3, 11), f"Python >= 3.11 needed, got {sys.version}"'

if ! "$PY" -c 'import torch, sys; v = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2]); sys.exit(v < (2, 11))' 2>/dev/null; then
  "$PY" -m pip install "$TORCH_SPEC"
fi
"$PY" -m pip install -e ".[meltingpot,training,rl,dev,play]"
# Last: a later pip install would report dm-meltingpot's unmet (unneeded) requirements as conflicts.
PYTHON="$PY" bash scripts/install_meltingpot.sh
"$PY" -c 'import torch, actionparty_env.real; print("setup ok: torch", torch.__version__, "| Melting Pot substrates:", len(actionparty_env.real.substrate_names()))'
