"""Checkpoints: `config.json` (architecture, games, action vocabulary, data summary, metrics, and the
SHA-256 of every file) plus `model-XXXXX-of-YYYYY.safetensors` shards of at most 15 MiB each, and the
artefacts `sprites.npz`, `start_states.npz`, `view_tables.npz` (each optional).

Loading checks everything against the config before anything is used and names the file at fault
(a `CheckpointError`, a ValueError): a file whose SHA-256 differs from config.json's (`digests.py`),
a file config.json lists that is missing, a missing or truncated shard, a tensor with the wrong shape,
a missing, unexpected or non-finite tensor. `check_checkpoint` does all of that except reading the
weights (the env constructors call it, so a bad checkpoint fails there, not at the first reset).

A config written before checkpoints carried digests (no `"sha256"` table) is accepted with a
`CheckpointWarning` that its files are unverified; `python -m training.bundle --refresh-digests DIR`
adds the table.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from actionparty_env.digests import CONFIG_FILE, DIGESTS_KEY, sha256_file
from actionparty_env.model.network import ModelConfig, WorldModel
from actionparty_env.model.sprites import SPRITES_FILE, load_sprite_tables, save_sprite_tables
from actionparty_env.model.transitions import TRANSITIONS_FILE, load_transition_tables, save_transition_tables
from actionparty_env.simulator import START_STATES_FILE
from actionparty_env.views import VIEW_TABLES_FILE

BUNDLED_FOLDER = Path(__file__).resolve().parent.parent / "checkpoints"
DEFAULT_CHECKPOINT = BUNDLED_FOLDER / "default"
# The bundled checkpoints by name: the model, and a small one for the CPU (docs/TRAINING.md, "The small
# model"), which shares the default's start states and view tables (facts of the games, not of a model).
BUNDLED = {"default": DEFAULT_CHECKPOINT, "small": BUNDLED_FOLDER / "small"}
SHARD_BYTES = 15 * 1024 * 1024
FORMAT = "actionparty-world-model/1"


# the optional files beside the shards
ARTEFACTS = (SPRITES_FILE, TRANSITIONS_FILE, START_STATES_FILE, VIEW_TABLES_FILE)


class CheckpointError(ValueError):
    """A checkpoint folder that does not hold a loadable, consistent model."""


class CheckpointWarning(UserWarning):
    """A checkpoint that loads, but with something unverified or a feature off."""


def save_checkpoint(model: WorldModel, folder: str | Path, extra: dict | None = None,
                    float_dtype: torch.dtype | None = None) -> Path:
    """Write config.json and weight shards. `float_dtype` (e.g. torch.bfloat16, to halve a bundled
    checkpoint) casts the floating-point parameters; loading casts them back to the model's dtype.
    Buffers are tables (the reward support: payoffs the dream pays out) and stay exact."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if float_dtype is not None:
        params = dict(model.named_parameters())
        state = {k: v.to(float_dtype) if k in params and v.is_floating_point() else v for k, v in state.items()}
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if nbytes > SHARD_BYTES:
            raise ValueError(f"tensor {key} ({nbytes} bytes) is larger than one shard")
        if size + nbytes > SHARD_BYTES and shards[-1]:
            shards.append({})
            size = 0
        shards[-1][key] = tensor
        size += nbytes
    for old in folder.glob("model-*.safetensors"):
        old.unlink()
    names = []
    for i, shard in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(folder / name))
        names.append(name)
    config = {
        "format": FORMAT,
        "model": model.cfg.to_dict(),
        "games": model.games,
        "action_vocab": model.action_vocab,
        "shards": {name: sorted(shard) for name, shard in zip(names, shards)},
        **(extra or {}),
    }
    if model.sprite_tables:
        save_sprite_tables(folder, model.sprite_tables)
    if model.transition_tables:
        save_transition_tables(folder, model.transition_tables)
    config[DIGESTS_KEY] = file_digests(folder, names)
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=1))
    return folder


def file_digests(folder: str | Path, shards) -> dict[str, str]:
    """{file: SHA-256} of the shards and of every artefact present in `folder`."""
    folder = Path(folder)
    names = sorted(set(shards) | {a for a in ARTEFACTS if (folder / a).is_file()})
    return {name: sha256_file(folder / name) for name in names}


def refresh_digests(folder: str | Path) -> dict[str, str]:
    """Recompute config.json's digest table from the files as they are (every shard must be there);
    for a checkpoint written before digests, or one whose artefacts were rebuilt by hand. Returns it."""
    folder = Path(folder)
    config = read_config(folder)
    for name in config["shards"]:
        if not (folder / name).is_file():
            raise CheckpointError(f"{folder / name}: missing shard (config.json lists it)")
    config[DIGESTS_KEY] = file_digests(folder, config["shards"])
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=1))
    _checked.clear()
    return config[DIGESTS_KEY]


def verify_files(folder: str | Path, config: dict) -> None:
    """Every file config.json's digest table lists is present and has that SHA-256; every shard is
    listed. An artefact present but not listed, or a config without a table, is a CheckpointWarning."""
    folder = Path(folder)
    cfg_path = folder / CONFIG_FILE
    table = config.get(DIGESTS_KEY)
    if table is None:
        warnings.warn(f"{cfg_path} has no SHA-256 digests (written before checkpoints carried them): its "
                      f"files are used unverified; add them with `python -m training.bundle --refresh-digests "
                      f"{folder}`", CheckpointWarning, stacklevel=3)
        return
    if not isinstance(table, dict) or not all(isinstance(v, str) and len(v) == 64 for v in table.values()):
        raise CheckpointError(f"{cfg_path}: {DIGESTS_KEY!r} must map file names to hex SHA-256 digests")
    for name in config["shards"]:
        if name not in table:
            raise CheckpointError(f"{cfg_path}: the shard {name} has no SHA-256 digest")
    for name, want in table.items():
        path = folder / name
        if Path(name).name != name:
            raise CheckpointError(f"{cfg_path}: {name!r} is not a file name in the checkpoint folder")
        if not path.is_file():
            raise CheckpointError(f"{path}: missing; {cfg_path} says the checkpoint has it (with its SHA-256)")
        got = sha256_file(path)
        if got != want:
            raise CheckpointError(f"{path}: SHA-256 {got[:16]}... does not match {cfg_path}'s {want[:16]}...: "
                                  f"the file is corrupted or was replaced")
    for name in ARTEFACTS:
        if name not in table and (folder / name).is_file():
            warnings.warn(f"{folder / name}: not in {cfg_path}'s digests, used unverified (`python -m "
                          f"training.bundle --refresh-digests {folder}` records it)", CheckpointWarning, stacklevel=3)


def _build_model(folder: Path, config: dict) -> WorldModel:
    """The config's WorldModel on the CPU, randomly initialised (a bad description names config.json).
    (Built on the CPU, not on torch's meta device: the first meta build imports torch._dynamo, seconds.)"""
    try:
        with torch.device("cpu"), torch.no_grad():
            return WorldModel(ModelConfig(**config["model"]), config["games"], config["action_vocab"])
    except (TypeError, KeyError, ValueError, AssertionError, RuntimeError) as e:
        raise CheckpointError(f"{folder / CONFIG_FILE}: bad model description ({e})") from e


def _check_tensor(path: Path, key: str, shape: tuple, expected: dict) -> None:
    if key not in expected:
        raise CheckpointError(f"{path}: unexpected tensor {key!r} for this architecture")
    if tuple(shape) != tuple(expected[key]):
        raise CheckpointError(f"{path}: tensor {key!r} has shape {tuple(shape)}, the config implies {tuple(expected[key])}")


_checked: dict[tuple, dict] = {}


def _signature(folder: Path) -> tuple:
    files = sorted(p for p in folder.iterdir() if p.is_file())
    return (str(folder.resolve()), *((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files))


def resolve_checkpoint(checkpoint: str | Path | None) -> Path:
    """A checkpoint argument as a folder: None is the bundled default, a bundled name ("default",
    "small") is that bundled folder, anything else a folder path (a local folder named like a bundled
    checkpoint is reached as "./small")."""
    if checkpoint is None:
        return DEFAULT_CHECKPOINT
    if isinstance(checkpoint, str) and checkpoint in BUNDLED:
        if not BUNDLED[checkpoint].is_dir():
            raise CheckpointError(f"the bundled checkpoint {checkpoint!r} is not installed ({BUNDLED[checkpoint]})")
        return BUNDLED[checkpoint]
    return Path(checkpoint)


def check_checkpoint(folder: str | Path | None = None) -> dict:
    """Check a checkpoint folder (None: the bundled one) without loading its weights: config.json, the
    SHA-256 of every file it lists, and every shard's tensor names and shapes against the architecture.
    Returns the config; a CheckpointError names the file at fault. Remembered per process until a file
    of the folder changes."""
    folder = resolve_checkpoint(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such folder (a checkpoint folder holds config.json and "
                              f"model-*.safetensors)")
    key = _signature(folder)
    if key in _checked:
        return _checked[key]
    config = read_config(folder)
    verify_files(folder, config)
    expected = {k: tuple(v.shape) for k, v in _build_model(folder, config).state_dict().items()}
    seen: set[str] = set()
    for name, keys in config["shards"].items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{path}: missing shard")
        try:
            with safe_open(str(path), "pt") as f:
                names = list(f.keys())
                shapes = {k: f.get_slice(k).get_shape() for k in names}
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{path}: unreadable or truncated ({e})") from e
        if sorted(names) != sorted(keys):
            raise CheckpointError(f"{path}: holds {len(names)} tensors, config.json lists {len(keys)}")
        for k in names:
            _check_tensor(path, k, shapes[k], expected)
        seen.update(names)
    missing = sorted(set(expected) - seen)
    if missing:
        raise CheckpointError(f"{folder}: tensors missing from every shard: {', '.join(missing[:5])}")
    _checked[key] = config
    return config


def read_config(folder: str | Path) -> dict:
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (a checkpoint folder holds config.json and model-*.safetensors)")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        got = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise CheckpointError(f"{path}: format {got!r} is not {FORMAT!r}")
    for key, kind in (("shards", dict), ("games", list), ("action_vocab", list), ("model", dict)):
        if not isinstance(config.get(key), kind):
            raise CheckpointError(f"{path}: {key!r} must be a {kind.__name__}, got {type(config.get(key)).__name__}")
    return config


def load_world_model(folder: str | Path | None = None, device="cpu") -> WorldModel:
    """Load a checkpoint folder (None: the bundled default) onto `device`, in eval mode, after
    `check_checkpoint` (digests, names, shapes); a non-finite weight is a CheckpointError too."""
    folder = resolve_checkpoint(folder)
    config = check_checkpoint(folder)  # digests, tensor names and shapes: all but the values
    model = _build_model(folder, config)
    state = model.state_dict()
    for name in config["shards"]:
        path = folder / name
        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{path}: unreadable or truncated ({e})") from e
        for key, tensor in tensors.items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise CheckpointError(f"{path}: tensor {key!r} holds NaN or infinite values (a corrupted shard)")
            state[key].copy_(tensor)
    model._codebook = None
    model.sprite_tables = load_sprite_tables(folder)
    model.transition_tables = load_transition_tables(folder)
    return model.to(device).eval()
