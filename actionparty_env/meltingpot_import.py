"""Import Melting Pot's substrate code without running `meltingpot/__init__.py`.

Why: `meltingpot/__init__.py` imports the bot policies and so TensorFlow, which substrates never use
and which is not installed here (and TensorFlow next to triton has segfaulted). We register a bare
package module named `meltingpot` whose `__path__` points at the installed package folder; Python
then imports submodules such as `meltingpot.substrate` from that folder without the package
`__init__`. If the real `meltingpot` is already imported, it is used as is.

Use it as `from actionparty_env.meltingpot_import import meltingpot` (the three submodules the project
needs are imported: `meltingpot.substrate`, `meltingpot.configs.substrates` and
`meltingpot.utils.substrates.builder`).
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types


def _import_meltingpot() -> types.ModuleType:
    if "meltingpot" not in sys.modules:
        spec = importlib.util.find_spec("meltingpot")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError(
                "Melting Pot is not installed: run `bash scripts/install_meltingpot.sh` "
                "(or `pip install -e .[meltingpot]` after it) to use the real environment"
            )
        package = types.ModuleType("meltingpot")
        package.__path__ = list(spec.submodule_search_locations)
        package.__file__ = spec.origin
        package.__spec__ = spec
        package.__package__ = "meltingpot"
        sys.modules["meltingpot"] = package
    for name in ("substrate", "configs.substrates", "utils.substrates.builder"):
        importlib.import_module(f"meltingpot.{name}")
    return sys.modules["meltingpot"]


meltingpot = _import_meltingpot()
substrate = meltingpot.substrate
builder = sys.modules["meltingpot.utils.substrates.builder"]

__all__ = ["meltingpot", "substrate", "builder"]
