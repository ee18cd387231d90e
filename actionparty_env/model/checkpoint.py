"""Checkpoints: `config.json` (architecture, games, action vocabulary, data summary, metrics) plus
`model-XXXXX-of-YYYYY.safetensors` shards of at most 15 MiB each, and optionally `start_states.npz`.

Loading checks everything against the config and names the file at fault: a missing or truncated
shard, a tensor with the wrong shape, a missing or unexpected tensor.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from actionparty_env.model.network import ModelConfig, WorldModel
from actionparty_env.model.sprites import load_sprite_tables, save_sprite_tables

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "checkpoints" / "default"
SHARD_BYTES = 15 * 1024 * 1024
FORMAT = "actionparty-world-model/1"


class CheckpointError(ValueError):
    """A checkpoint folder that does not hold a loadable, consistent model."""


def save_checkpoint(model: WorldModel, folder: str | Path, extra: dict | None = None,
                    float_dtype: torch.dtype | None = None) -> Path:
    """Write config.json and weight shards. `float_dtype` (e.g. torch.bfloat16, to halve a bundled
    checkpoint) casts floating-point tensors; loading casts them back to the model's dtype."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if float_dtype is not None:
        state = {k: v.to(float_dtype) if v.is_floating_point() else v for k, v in state.items()}
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
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    if model.sprite_tables:
        save_sprite_tables(folder, model.sprite_tables)
    return folder


def read_config(folder: str | Path) -> dict:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (a checkpoint folder holds config.json and model-*.safetensors)")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from e
    if config.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format {config.get('format')!r} is not {FORMAT!r}")
    return config


def load_world_model(folder: str | Path | None = None, device="cpu") -> WorldModel:
    """Load a checkpoint folder (None: the bundled default) onto `device`, in eval mode."""
    folder = Path(folder) if folder is not None else DEFAULT_CHECKPOINT
    config = read_config(folder)
    try:
        model = WorldModel(ModelConfig(**config["model"]), config["games"], config["action_vocab"])
    except (TypeError, KeyError, ValueError) as e:
        raise CheckpointError(f"{folder / 'config.json'}: bad model description ({e})") from e
    expected = model.state_dict()
    seen: set[str] = set()
    for name, keys in config["shards"].items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{path}: missing shard")
        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{path}: unreadable or truncated ({e})") from e
        if sorted(tensors) != sorted(keys):
            raise CheckpointError(f"{path}: holds {len(tensors)} tensors, config.json lists {len(keys)}")
        for key, tensor in tensors.items():
            if key not in expected:
                raise CheckpointError(f"{path}: unexpected tensor {key!r} for this architecture")
            if tensor.shape != expected[key].shape:
                raise CheckpointError(f"{path}: tensor {key!r} has shape {tuple(tensor.shape)}, "
                                      f"the config implies {tuple(expected[key].shape)}")
            expected[key].copy_(tensor)
            seen.add(key)
    missing = sorted(set(expected) - seen)
    if missing:
        raise CheckpointError(f"{folder}: tensors missing from every shard: {', '.join(missing[:5])}")
    model._codebook = None
    model.sprite_tables = load_sprite_tables(folder)
    return model.to(device).eval()
