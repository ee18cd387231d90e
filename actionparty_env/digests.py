"""SHA-256 digests of a checkpoint's files, kept in its config.json.

`config.json["sha256"]` maps every file of the checkpoint (each weight shard and each artefact:
sprites.npz, start_states.npz, view_tables.npz) to the hex SHA-256 of its bytes. Loading checks them
before anything is used (`actionparty_env.model.checkpoint.verify_files`): a file listed there must be
present and unchanged. The writers keep the table current: `save_checkpoint` writes the shards' and
every artefact already in the folder, and each artefact writer (`StartStates.save`,
`save_sprite_tables`, `training.artefacts.write_view_tables`) records its own file in a folder whose
config.json has a table. `python -m training.bundle --refresh-digests DIR` recomputes the table of a
folder written before digests existed.

This module needs nothing but the standard library, so every writer can import it.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

DIGESTS_KEY = "sha256"
CONFIG_FILE = "config.json"
_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """The hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def record_digests(folder: str | Path, names: list[str]) -> bool:
    """Record the digests of `names` (files in `folder`) in folder/config.json, where that config has a
    digest table (a checkpoint written with digests); otherwise change nothing (a folder without a
    config yet gets its table from `save_checkpoint`; an old config from `--refresh-digests`).
    Returns whether the config was updated."""
    folder = Path(folder)
    path = folder / CONFIG_FILE
    if not path.is_file():
        return False
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError:
        return False  # loading names the broken config; a writer does not
    table = config.get(DIGESTS_KEY)
    if not isinstance(table, dict):
        return False
    for name in names:
        table[name] = sha256_file(folder / name)
    config[DIGESTS_KEY] = dict(sorted(table.items()))
    path.write_text(json.dumps(config, indent=1))
    return True
