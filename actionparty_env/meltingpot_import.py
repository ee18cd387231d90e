"""Import Melting Pot's substrate configs and builder without running `meltingpot/__init__.py`.

Why: `meltingpot/__init__.py` imports the bot policies and so TensorFlow, which substrates never use
and which is not installed here (and TensorFlow next to triton has segfaulted). We register a bare
package module named `meltingpot` whose `__path__` points at the installed package folder; Python
then imports submodules from that folder without the package `__init__`. If the real `meltingpot`
is already imported, it is used as is.

Only two submodules are imported: `meltingpot.configs.substrates` (the configs) and
`meltingpot.utils.substrates.builder` (settings -> dmlab2d). `meltingpot.substrate` itself is not
needed (it adds Melting Pot's dm_env wrappers, which import chex and so JAX); it still imports after
this module if chex and reactivex are installed.

    from actionparty_env.meltingpot_import import SUBSTRATES, builder, get_config
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types

from ml_collections import config_dict


def _register_bare_package() -> types.ModuleType:
    if "meltingpot" not in sys.modules:
        spec = importlib.util.find_spec("meltingpot")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("Melting Pot is not installed: run `bash scripts/install_meltingpot.sh` "
                              "to use the real environment")
        package = types.ModuleType("meltingpot")
        package.__path__ = list(spec.submodule_search_locations)
        package.__file__ = spec.origin
        package.__spec__ = spec
        package.__package__ = "meltingpot"
        sys.modules["meltingpot"] = package
    return sys.modules["meltingpot"]


meltingpot = _register_bare_package()
configs = importlib.import_module("meltingpot.configs.substrates")
builder = importlib.import_module("meltingpot.utils.substrates.builder")
SUBSTRATES: tuple[str, ...] = tuple(sorted(configs.SUBSTRATES))


def get_config(name: str) -> config_dict.ConfigDict:
    """The locked config of a substrate, as `meltingpot.substrate.get_config` returns it."""
    return configs.get_config(name).lock()


__all__ = ["meltingpot", "configs", "builder", "SUBSTRATES", "get_config"]
