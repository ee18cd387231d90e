"""Make a training run's EMA weights the bundled checkpoint: bf16 safetensors shards (<= 15 MiB each),
config.json with the training summary, metrics and the SHA-256 of every file, and the artefacts
training/artefacts.py builds: sprites.npz (the sprite table of the training episodes), transitions.npz (the changes cells make in them), start_states.npz
(real states of the validation episodes) and, with `--view-tables`, view_tables.npz.

    python -m training.bundle --run runs/x --data data/mp --out actionparty_env/checkpoints/default
    python -m training.bundle --run runs/x --data data/mp --starts data/starts --out DIR
    python -m training.bundle --starts data/starts --out actionparty_env/checkpoints/default   # starts only
    python -m training.bundle --refresh-digests actionparty_env/checkpoints/default

`--view-tables` adds the per-substrate view tables that make the dream's egocentric views match
Melting Pot's pixel for pixel (actionparty_env/views.py). Start states are the first frame (a real
reset) and frame 50 of every validation episode of `--data`, or of `--starts LMDB [LMDB...]` (a dataset
recorded for them, e.g. `python -m training.record --split val --episodes-per-substrate 16 --steps 60`
gives 32 per substrate; `--starts-split` picks another split); the benchmarks' test episodes are
never bundled. `--starts` without `--run` replaces only the start states of the checkpoint in `--out`
(weights and the other artefacts untouched). The bundle aims at >= 32 start states per substrate and
names the substrates below that.
`--refresh-digests DIR` only recomputes DIR/config.json's digest table from DIR's files as they are
(a checkpoint written before digests, or artefacts rebuilt by hand); the weights are not touched.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from actionparty_env.model.checkpoint import load_world_model, read_config, refresh_digests, save_checkpoint
from training.artefacts import (STARTS_WANTED, build_sprite_tables, build_transition_tables, start_state_counts,
                                start_states, write_view_tables)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m training.bundle", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", help="a training run folder (holds export/ and metrics.jsonl)")
    p.add_argument("--data", help="the LMDB dataset of the run (sprite tables from train, start states from val)")
    p.add_argument("--out", help="the checkpoint folder to write")
    p.add_argument("--metrics", help="a JSON of measured metrics to store in config.json")
    p.add_argument("--view-tables", action="store_true",
                   help="also record view_tables.npz from the real game (needs Melting Pot; ~7 min on one core)")
    p.add_argument("--starts", nargs="+", metavar="LMDB",
                   help="take the start states from these datasets (default: --data's validation episodes)")
    p.add_argument("--starts-split", default="val", help="the split of --starts (or --data) the start states come from")
    p.add_argument("--refresh-digests", metavar="DIR",
                   help="only recompute DIR/config.json's SHA-256 table from DIR's files (weights untouched)")
    args = p.parse_args(argv)
    if args.refresh_digests:
        table = refresh_digests(args.refresh_digests)
        print("\n".join(f"{digest}  {name}" for name, digest in table.items()))
        return
    if args.starts and args.run is None and args.out:  # only the start states of an existing checkpoint
        read_config(args.out)  # a CheckpointError if --out is not one
        _write_starts(args.starts, args.starts_split, Path(args.out))
        refresh_digests(args.out)
        return
    missing = [f"--{k}" for k in ("run", "data", "out") if getattr(args, k) is None]
    if missing:
        p.error(f"the arguments {', '.join(missing)} are required (or --refresh-digests DIR, or --starts with --out)")
    export = Path(args.run) / "export"
    model = load_world_model(export)
    extra = {k: v for k, v in read_config(export).items()
             if k not in ("format", "model", "games", "action_vocab", "shards", "sha256")}
    if args.metrics:
        extra["metrics"] = json.loads(Path(args.metrics).read_text())
    out = Path(args.out)
    model.sprite_tables = build_sprite_tables(model, args.data, split="train", every=2)
    model.transition_tables = build_transition_tables(model, args.data, split="train")
    save_checkpoint(model, out, extra=extra, float_dtype=torch.bfloat16)
    _write_starts(args.starts or [args.data], args.starts_split, out)  # each writer records its digest
    if args.view_tables:
        write_view_tables(out)
    refresh_digests(out)  # and once more over everything, whatever wrote it
    sizes = {f.name: f.stat().st_size for f in out.iterdir()}
    print(json.dumps(sizes, indent=1), f"\ntotal {sum(sizes.values()) / 2**20:.1f} MiB")


def _write_starts(data: list[str], split: str, out: Path) -> None:
    states = start_states(data, split=split)
    if not states.states:
        raise SystemExit(f"no {split} episodes in {', '.join(data)}: no start states to bundle")
    counts, short = start_state_counts(states)
    path = states.save(out)
    print(f"wrote {path}: {sum(counts.values())} start states of {len(counts)} substrates from {', '.join(data)} "
          f"({split}), {min(counts.values())} to {max(counts.values())} per substrate")
    if short:
        print(f"fewer than {STARTS_WANTED} start states: {', '.join(f'{n} ({counts.get(n, 0)})' for n in short)}")


if __name__ == "__main__":
    main()
