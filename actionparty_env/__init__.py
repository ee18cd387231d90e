"""ActionParty-Env: a learned, action-controllable multi-player world model of Melting Pot, served as
a PettingZoo ParallelEnv, beside the real Melting Pot with the same spaces and ground truth.

    import actionparty_env
    env = actionparty_env.real_parallel_env("coins")   # the real game (needs Melting Pot installed)

Imports are lazy, so `import actionparty_env` needs neither Melting Pot nor torch.
"""
from __future__ import annotations

import importlib
from typing import Any

from actionparty_env.games import GameSpec, get_game, load_catalog

__version__ = "0.1.0"

# name -> module that defines it, imported on first use.
_LAZY = {
    "real_parallel_env": "actionparty_env.real",
    "RealParallelEnv": "actionparty_env.real",
    # --- dream env (added by the dream-env module: env.py / vector.py) ---
    # "parallel_env": "actionparty_env.env",
    # "DreamParallelEnv": "actionparty_env.env",
    # "DreamVecEnv": "actionparty_env.vector",
    # --- end dream env ---
}

__all__ = ["GameSpec", "get_game", "load_catalog", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'actionparty_env' has no attribute {name!r}")
