"""Make a training run's EMA weights the bundled checkpoint: bf16 safetensors shards (<= 15 MiB each),
config.json with the training summary and metrics, start_states.npz of real reset states and
sprites.npz, the sprite table of the training episodes (actionparty_env/model/sprites.py).

    python -m training.bundle --run runs/x --data data/mp --out actionparty_env/checkpoints/default

`--view-tables` adds the per-substrate view tables (actionparty_env/views.py) that make the dream's
egocentric views match Melting Pot's pixel for pixel. Start states are the first frame (a real reset) and frame 50 of every validation episode; the
benchmarks' test episodes are never bundled.
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from actionparty_env.model.checkpoint import load_world_model, read_config, save_checkpoint
from actionparty_env.model.sprites import build_sprite_tables
from actionparty_env.views import write_view_tables
from training.dataset import list_episodes, read_episode


def start_states(data: str, split: str = "val", frames=(0, 50)) -> dict[str, np.ndarray]:
    states, count = {}, defaultdict(int)
    for key in list_episodes(data, split=split):
        ep = read_episode(data, key)
        sub = ep.header["substrate"]
        for t in frames:
            if t < len(ep.frames):
                j = count[sub]
                states.update({f"{sub}/{j}/frame": ep.frames[t], f"{sub}/{j}/cells": ep.cells[t],
                               f"{sub}/{j}/facing": ep.facing[t], f"{sub}/{j}/alive": ep.alive[t]})
                count[sub] += 1
    return states


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="a training run folder (holds export/ and metrics.jsonl)")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--metrics", help="a JSON of measured metrics to store in config.json")
    p.add_argument("--view-tables", action="store_true",
                   help="also record view_tables.npz from the real game (needs Melting Pot; ~7 min on one core)")
    args = p.parse_args(argv)
    export = Path(args.run) / "export"
    model = load_world_model(export)
    extra = {k: v for k, v in read_config(export).items() if k not in ("format", "model", "games", "action_vocab", "shards")}
    if args.metrics:
        extra["metrics"] = json.loads(Path(args.metrics).read_text())
    out = Path(args.out)
    model.sprite_tables = build_sprite_tables(model, args.data, split="train", every=2)
    save_checkpoint(model, out, extra=extra, float_dtype=torch.bfloat16)
    np.savez_compressed(out / "start_states.npz", **start_states(args.data))
    if args.view_tables:
        write_view_tables(out)
    sizes = {f.name: f.stat().st_size for f in out.iterdir()}
    print(json.dumps(sizes, indent=1), f"\ntotal {sum(sizes.values()) / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
