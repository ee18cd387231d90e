"""`actionparty evaluate`: closed-loop metrics of a checkpoint on held-out recorded episodes, from the
model's own states.

    python -m benchmarks.closed_loop --checkpoint DIR --data DATA [--split test] [--horizons 1 20 100]

Per substrate and overall, at each horizon h, beside the copy-last-frame baseline:
- trajectory agreement: share of (really) live players whose dreamed cell and facing equal the real
  game's after h closed-loop steps (only actions come from the record);
- action-following: over steps where the real game applied the action (a move changed the cell by
  the rule's offset, a turn rotated the facing), the share where the dream applied that same rule to
  its own previous state; blocked real moves are not scored (walls and collisions decide them);
- drawn/alive: avatar-patch cells in the dreamed frame over live players in the dreamed state (1.0 =
  every player drawn once; above 1 means ghosts), where avatar patches are the codes found at live
  players' cells in the real frames of the same episodes. The pixel detector (benchmarks/fidelity.py)
  replaces this simple count.
Writes JSON + markdown under benchmarks/results/.
"""
from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from actionparty_env.games import load_catalog
from actionparty_env.model.checkpoint import load_world_model
from benchmarks.provenance import git_commit
from benchmarks.rules import rule_outcome
from training.rollout import closed_loop
from training.store import list_episodes, read_episode


def score_batch(action_names, actions, real, dream, avatar_codes, codes_fn, horizons):
    """Metrics of one batch of episodes; real/dream: dicts of [B, S+1, ...] arrays."""
    out = {}
    s_len = dream["cells"].shape[1] - 1
    live = real["alive"]
    # Trajectory agreement at each horizon.
    for h in horizons:
        if h > s_len:
            continue
        ok = (dream["cells"][:, h] == real["cells"][:, h]).all(-1) & (dream["facing"][:, h] == real["facing"][:, h])
        m = live[:, h]
        out[f"traj@{h}"] = (float((ok & m).sum()), float(m.sum()))
    # Action-following over steps 1..h where the real game applied the action.
    exp_c, exp_f, kind = rule_outcome(action_names, actions[:, :s_len], real["cells"][:, :-1], real["facing"][:, :-1])
    applied = live[:, :-1] & live[:, 1:] & (kind > 0) & (exp_c == real["cells"][:, 1:]).all(-1) & (exp_f == real["facing"][:, 1:])
    d_c, d_f, _ = rule_outcome(action_names, actions[:, :s_len], dream["cells"][:, :-1], dream["facing"][:, :-1])
    followed = (d_c == dream["cells"][:, 1:]).all(-1) & (d_f == dream["facing"][:, 1:]) & dream["alive"][:, 1:]
    for h in horizons:
        if h > s_len:
            continue
        a = applied[:, :h]
        out[f"follow@{h}"] = (float((followed[:, :h] & a).sum()), float(a.sum()))
        codes = codes_fn(dream["frames"][:, h])
        drawn = np.isin(codes, avatar_codes).reshape(len(codes), -1).sum(-1)
        out[f"drawn/alive@{h}"] = (float(drawn.sum()), float(dream["alive"][:, h].sum()))
    return out


def closed_loop_metrics(checkpoint, data: str, split: str = "test", horizons=(1, 20, 100), device="cpu",
             sampling_steps: int = 1, temperature: float = 0.0, substrates=None) -> dict:
    model = load_world_model(checkpoint, device)
    catalog = load_catalog()
    book = model.codebook()
    groups = defaultdict(list)
    for key in list_episodes(data, split=split):
        ep = read_episode(data, key)
        if substrates and ep.header["substrate"] not in substrates:
            continue
        groups[(ep.header["substrate"], ep.frames.shape)].append(ep)
    totals = {"dream": defaultdict(lambda: defaultdict(lambda: [0.0, 0.0])),
              "copy_last": defaultdict(lambda: defaultdict(lambda: [0.0, 0.0]))}
    t0 = time.time()
    for (substrate, _), eps in tqdm(sorted(groups.items(), key=lambda kv: kv[0][0]), desc="closed loop"):
        steps = min(max(horizons), min(len(e.actions) for e in eps))
        real = {k: np.stack([getattr(e, k)[: steps + 1] for e in eps]) for k in ("frames", "cells", "facing", "alive")}
        actions = np.stack([e.actions[:steps] for e in eps]).astype(np.int64)
        real_codes = np.stack([[book.encode(f) for f in fr] for fr in real["frames"]])
        rr, cc = real["cells"][..., 0].clip(0, real_codes.shape[2] - 1), real["cells"][..., 1].clip(0, real_codes.shape[3] - 1)
        b_idx, t_idx = np.indices(rr.shape[:2])
        at_players = real_codes[b_idx[..., None], t_idx[..., None], rr, cc]
        avatar_codes = np.unique(at_players[real["alive"]])
        dream = closed_loop(model, eps, steps, device, sampling_steps, temperature)
        copy = {"frames": np.repeat(real["frames"][:, :1], steps + 1, 1),
                **{k: np.repeat(real[k][:, :1], steps + 1, 1) for k in ("cells", "facing", "alive")}}
        names = catalog[substrate].action_names
        enc = lambda frames: np.stack([book.encode(f) for f in frames])  # noqa: E731
        for label, run in (("dream", dream), ("copy_last", copy)):
            for metric, (num, den) in score_batch(names, actions, real, run, avatar_codes, enc, horizons).items():
                for where in (substrate, "overall"):
                    totals[label][where][metric][0] += num
                    totals[label][where][metric][1] += den
    result = {label: {where: {m: (v[0] / v[1] if v[1] else None) for m, v in ms.items()} for where, ms in per.items()}
              for label, per in totals.items()}
    result["meta"] = {"checkpoint": str(checkpoint), "data": data, "split": split, "horizons": list(horizons),
                      "sampling_steps": sampling_steps, "temperature": temperature, "device": str(device),
                      "device_name": torch.cuda.get_device_name() if str(device).startswith("cuda") else "cpu",
                      "seconds": time.time() - t0, "episodes": sum(len(v) for v in groups.values()),
                      "commit": git_commit()}
    return result


def to_markdown(result: dict) -> str:
    hs = result["meta"]["horizons"]
    cols = [f"{m}@{h}" for m in ("traj", "follow", "drawn/alive") for h in hs]
    lines = ["| substrate | model | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for where in ["overall"] + sorted(k for k in result["dream"] if k != "overall"):
        for label in ("dream", "copy_last"):
            row = result[label].get(where, {})
            lines.append(f"| {where} | {label} | " + " | ".join(fmt(row.get(c)) for c in cols) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="actionparty evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--horizons", type=int, nargs="+", default=[1, 20, 100])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--sampling-steps", type=int, default=1)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--out", default="benchmarks/results/closed_loop")
    args = p.parse_args(argv)
    result = closed_loop_metrics(args.checkpoint, args.data, args.split, tuple(args.horizons), args.device,
                      args.sampling_steps, args.temperature)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps(result, indent=1))
    md = to_markdown(result)
    Path(f"{args.out}.md").write_text(f"# Closed-loop evaluation\n\n{json.dumps(result['meta'])}\n\n{md}\n")
    print(md.split("\n")[0] + "\n" + "\n".join(md.split("\n")[1:4]))


if __name__ == "__main__":
    main()
