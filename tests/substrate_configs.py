"""The installed Melting Pot's substrate configs, for tests that check a rule's facts against them."""
from __future__ import annotations

import importlib
from types import ModuleType


def substrate_config(substrate: str) -> ModuleType:
    """A substrate's config module (its constants, prefabs and `build`), imported without TensorFlow."""
    from actionparty_env.meltingpot_import import SUBSTRATES

    assert substrate in SUBSTRATES
    return importlib.import_module(f"meltingpot.configs.substrates.{substrate}")
