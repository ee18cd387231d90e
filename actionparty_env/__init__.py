"""ActionParty-Env: a learned, action-controllable multi-player world model of Melting Pot, served as
a PettingZoo ParallelEnv, beside the real Melting Pot with the same spaces and ground truth.

    import actionparty_env
    env = actionparty_env.parallel_env("coins")        # the dream (the bundled world model)
    env = actionparty_env.real_parallel_env("coins")   # the real game (needs Melting Pot installed)
    env = pettingzoo.make("parallel", "actionparty/dream-v0", substrate="coins")  # via PettingZoo's registry

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
    "parallel_env": "actionparty_env.env",
    "DreamParallelEnv": "actionparty_env.env",
    "DreamVecEnv": "actionparty_env.vector",
    "RealVecEnv": "actionparty_env.real_vector",
}

__all__ = ["GameSpec", "get_game", "load_catalog", *_LAZY]


def _register() -> None:
    """Register the dream with PettingZoo's parallel-env registry (the entry point loads lazily)."""
    import pettingzoo

    # PettingZoo has a registry since 1.27; older versions (setup.cfg allows >= 1.24) have none.
    if hasattr(pettingzoo, "register") and "actionparty/dream-v0" not in pettingzoo.parallel_registry:
        pettingzoo.register("parallel", id="actionparty/dream-v0", entry_point="actionparty_env.env:parallel_env")


_register()


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'actionparty_env' has no attribute {name!r}")
