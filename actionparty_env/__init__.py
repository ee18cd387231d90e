"""ActionParty-Env: a learned, action-controllable multi-player world model of Melting Pot, served as
a PettingZoo ParallelEnv, beside the real Melting Pot with the same spaces and ground truth.

    import actionparty_env
    env = actionparty_env.parallel_env("coins")        # the dream (the bundled world model)
    env = actionparty_env.real_parallel_env("coins")   # the real game (needs Melting Pot installed)
    env = pettingzoo.make("parallel", "actionparty/dream-v0", substrate="coins")  # via PettingZoo's registry
    env = pettingzoo.make("aec", "actionparty/real-v0", substrate="coins")        # the real game, AEC

`import actionparty_env` registers both envs in PettingZoo's registries, parallel and AEC: `IDS` maps
each id to the env's `metadata["name"]` (PettingZoo's own style: actionparty_dream_v0,
actionparty_real_v0).

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
    "DreamConfig": "actionparty_env.env",
    "DreamParallelEnv": "actionparty_env.env",
    "DreamVecEnv": "actionparty_env.vector",
    "RealVecEnv": "actionparty_env.real_vector",
}

__all__ = ["GameSpec", "get_game", "load_catalog", "IDS", "dream_aec_env", "real_aec_env", *_LAZY]


# registry id -> (the parallel env's factory, its metadata["name"])
IDS = {
    "actionparty/dream-v0": ("actionparty_env.env:parallel_env", "actionparty_dream_v0"),
    "actionparty/real-v0": ("actionparty_env.real:real_parallel_env", "actionparty_real_v0"),
}


def dream_aec_env(substrate: str, **kwargs: Any):
    """The dream as a PettingZoo AEC env (`parallel_to_aec` of `parallel_env`; the same arguments)."""
    from pettingzoo.utils.conversions import parallel_to_aec

    from actionparty_env.env import parallel_env

    return parallel_to_aec(parallel_env(substrate, **kwargs))


def real_aec_env(substrate: str, **kwargs: Any):
    """The real Melting Pot as a PettingZoo AEC env (`parallel_to_aec` of `real_parallel_env`)."""
    from pettingzoo.utils.conversions import parallel_to_aec

    from actionparty_env.real import real_parallel_env

    return parallel_to_aec(real_parallel_env(substrate, **kwargs))


def _register() -> None:
    """Register both envs with PettingZoo's registries (the entry points load lazily)."""
    import pettingzoo

    # PettingZoo has a registry since 1.27; older versions (setup.cfg allows >= 1.24) have none.
    if not hasattr(pettingzoo, "register"):
        return
    aec = {"actionparty/dream-v0": dream_aec_env, "actionparty/real-v0": real_aec_env}
    for id, (entry_point, _) in IDS.items():
        if id not in pettingzoo.parallel_registry:
            pettingzoo.register("parallel", id=id, entry_point=entry_point)
        if id not in pettingzoo.aec_registry:
            pettingzoo.register("aec", id=id, entry_point=aec[id])


_register()


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'actionparty_env' has no attribute {name!r}")
