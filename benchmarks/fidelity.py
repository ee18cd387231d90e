"""`actionparty benchmark fidelity`: how faithful the dream is to the real Melting Pot, from pixels.

    python -m benchmarks.fidelity --data DATA [--checkpoint DIR] [--split test] [--device cuda] \\
        [--horizons 1 5 10 20 50 100] [--substrates a,b] [--episodes 2] [--out-dir benchmarks/results --tag cpu]

On held-out recorded episodes, each run starts from the real first frame and state and is fed the
recorded actions; the model's own frames and states feed back (training/rollout.closed_loop). Every
frame is scored from its pixels by the player detector (benchmarks/detector.py); the model's state
heads are only compared with what the detector sees, never trusted. Runs on the same episodes:
`dream` (the checkpoint), `copy_last` (the first frame repeated: the floor), `real` (the recorded
frames themselves: the ceiling, i.e. what the detector and the rule checker make of the real game),
and any `--ablation NAME=DIR` checkpoints. Dreams are drawn with each checkpoint's sprite constraint
(actionparty_env/model/sprites.py, where it has a sprites.npz) unless `--free-sprites`: with it,
`preserve` and `heads` hold by construction wherever the model's alive predictions are right, and
`follow` and `traj` measure the predicted states through the pixels.

The instruments are built per substrate from the test episodes' own real frames and ground truth:
the detector's templates (per episode where the catalog says the map's colours are drawn per build,
as in coins) and the rule checker's blocking patches. That is legitimate for a measuring instrument
of the dream frames; the detector's accuracy on frames it was not built from is measured separately
by `python -m benchmarks.detector_accuracy` (benchmarks/results/fidelity_detector_cpu.md).

Metrics per step t (t = 1..H) and per substrate and overall:
- follow: action-following. Players alive in the real game at t-1 and t; their detected states in
  the run's frames t-1 and t must be the effect of the recorded action under the game's rules
  (benchmarks/rules.py; a player not found counts as not following; a transition the rule checker
  leaves UNDECIDED from the real episode is not scored). `follow_mt`: the same over moves and turns that
  take effect in the real game's situation (not frozen: NOOP and the like, and a frozen player's moves,
  are easy: copy-last follows them by doing nothing).
- preserve: subject preservation. Players alive in the real game at t, each drawn exactly once as
  itself: no ghost copies, no player lost, no player drawn as another. In a shared-colour class every
  drawing too many or too few costs one of its live players. `ghosts` and `lost` count the extra and the missing
  drawings per frame.
- traj: the detected cell and facing equal the real game's at t (in a shared-colour class: some
  member's drawing is at the player's cell with its facing; identity cannot be scored there).
- cell: share of 8x8 cells whose mean absolute error against the real frame is <= CELL_TOLERANCE.
- psnr: 10 log10(255^2 / MSE), the MSE pooled over all frames at step t.
- heads: the model's state heads agree with the detector: a live predicted player is drawn at its
  predicted cell with its predicted facing (uniquely, for a visible identity); a dead one is not drawn.
Table: follow, follow_mt, preserve, heads, ghosts and lost pooled over steps 1..h (the paper's "over
20 steps"); traj, cell and psnr at step h.

Ablations are checkpoints trained with the same budget but one part of the method switched off
(`ModelConfig.spatial_rope`, `ModelConfig.subject_isolation`; scripts/gpu_lease.sh `ablations` trains
them); pass them with `--ablation no_rope=DIR --ablation no_isolation=DIR` and they are scored like the
dream, on the same episodes. With `--cache`, rollouts are kept per checkpoint folder, so several
processes can dream one checkpoint each and a last run scores them all together.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from actionparty_env.games import load_catalog
from actionparty_env.grid import CELL
from benchmarks.detector import PlayerDetector
from benchmarks.rules import FREE, FROZEN, MOVE, TURN, UNDECIDED, RuleChecker, rule_outcome

PAPER = {"label": "ActionParty (Pondaven et al., 2026)", "horizon": 20, "follow": 0.779, "preserve": 0.903}
CELL_TOLERANCE = 8.0  # mean absolute error (0..255) under which an 8x8 cell counts as right
POOLED = ("follow", "follow_mt", "preserve", "heads", "ghosts", "lost")  # pooled over steps 1..h
AT_STEP = ("traj", "cell", "psnr")                                       # at step h
METRICS = POOLED[:4] + AT_STEP


def score_episode(det: PlayerDetector, rules: RuleChecker, real: dict, frames: np.ndarray,
                  heads: dict | None = None) -> dict[str, np.ndarray]:
    """Per-step (numerator, denominator) arrays [2, S+1] of one run of one episode (index t = frame t,
    0 = the shared real start: not scored).

    real: the recorded episode's arrays (frames [S+1,H,W,3], actions [S,N], cells [S+1,N,2],
    facing/alive [S+1,N]); frames: the run's frames [S+1,H,W,3]; heads: the model's predicted
    cells/facing/alive [S+1,...] (dream runs) or None."""
    s_len = len(frames) - 1
    n = real["cells"].shape[1]
    out = {m: np.zeros((2, s_len + 1)) for m in METRICS + ("ghosts", "lost", "sqerr")}
    hits = det.detect_many(frames)                                   # [S+1, R, C, K, 4]
    rows, cols = hits.shape[1:3]
    acts = np.asarray(real["actions"], np.int64)
    # The real episode's situation (freezes, shoves: benchmarks/rules.py) decides which actions take effect.
    real_steps = len(real["cells"]) - 1
    situation = rules.situation({**real, "frames": real["frames"][: real_steps + 1], "actions": acts[:real_steps]})

    def predict(t: int, c: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        new_c, new_f, _ = rule_outcome(rules.action_names, acts[t - 1], c, f, (rows, cols), rules.torus)
        frozen = situation[t - 1] == FROZEN
        return np.where(frozen[:, None], c, new_c), np.where(frozen, f, new_f)

    cells, facing, found = det.track(hits, real["cells"][0], real["facing"][0], predict)
    shown = hits.any(-1)                                             # [S+1, R, C, K]
    counts = shown.sum((1, 2))                                       # [S+1, K]
    occupied = shown.any(-1)                                         # [S+1, R, C]
    k_of = det.classes
    single = np.array([len(det.members[k]) == 1 for k in k_of])     # [N] identity visible
    alive = real["alive"].astype(bool)
    rc = real["cells"].astype(np.int64)
    inside = (rc >= 0).all(-1) & (rc < (rows, cols)).all(-1)
    live = alive & inside                                            # real players drawable at t
    ry, rx = np.where(inside, rc[..., 0], 0), np.where(inside, rc[..., 1], 0)
    steps = np.arange(s_len + 1)[:, None]
    # Subject preservation, ghosts, losses.
    live_k = np.zeros_like(counts)
    np.add.at(live_k, (np.repeat(steps, n, 1), np.broadcast_to(k_of, live.shape)), live.astype(np.int64))
    # Each drawing too many or too few of a class costs one of its live players (a visible identity:
    # the player is preserved when drawn exactly once).
    preserved = np.maximum(live_k - np.abs(counts - live_k), 0)       # [S+1, K]
    out["preserve"] = np.stack([preserved.sum(1), live.sum(1)]).astype(float)
    out["ghosts"] = np.stack([np.maximum(counts - live_k, 0).sum(1), np.ones(s_len + 1)])
    out["lost"] = np.stack([np.maximum(live_k - counts, 0).sum(1), np.ones(s_len + 1)])
    # Trajectory agreement with the real game.
    at_real = hits[steps, ry, rx, k_of[None], real["facing"].astype(np.int64) % 4]
    traj = at_real & (~single | (counts[:, k_of] == 1))
    out["traj"] = np.stack([(traj & live).sum(1), live.sum(1)]).astype(float)
    # Action-following, step t-1 -> t, for players alive in the real game at both (UNDECIDED: not scored).
    for t in range(1, s_len + 1):
        ok = rules.check(real["actions"][t - 1], frames[t - 1], cells[t - 1], facing[t - 1], found[t - 1],
                         cells[t], facing[t], found[t], occupied[t - 1], occupied[t], situation[t - 1])
        scored = live[t - 1] & live[t] & (situation[t - 1] != UNDECIDED)
        _, _, kind = rule_outcome(rules.action_names, real["actions"][t - 1], rc[t - 1], real["facing"][t - 1])
        # Moves and turns that take effect in the real game's situation (a frozen one is as easy as a NOOP).
        mt = scored & ((kind == MOVE) | (kind == TURN)) & (situation[t - 1] == FREE)
        out["follow"][:, t] = (ok & scored).sum(), scored.sum()
        out["follow_mt"][:, t] = (ok & mt).sum(), mt.sum()
    # Pixels.
    diff = np.abs(frames.astype(np.int16) - real["frames"][: s_len + 1].astype(np.int16))
    cell_err = diff.reshape(s_len + 1, rows, CELL, cols, CELL, 3).mean((2, 4, 5))
    out["cell"] = np.stack([(cell_err <= CELL_TOLERANCE).sum((1, 2)), np.full(s_len + 1, rows * cols)]).astype(float)
    out["sqerr"] = np.stack([(diff.astype(np.float64) ** 2).sum((1, 2, 3)), np.full(s_len + 1, diff[0].size)])
    # The model's state heads against the detector.
    if heads is not None:
        hc = heads["cells"].astype(np.int64)
        hin = (hc >= 0).all(-1) & (hc < (rows, cols)).all(-1)
        hy, hx = np.where(hin, hc[..., 0], 0), np.where(hin, hc[..., 1], 0)
        drawn = hits[steps, hy, hx, k_of[None], heads["facing"].astype(np.int64) % 4] & hin
        drawn &= ~single | (counts[:, k_of] == 1)
        h_alive = heads["alive"].astype(bool)
        agree = np.where(h_alive, drawn, counts[:, k_of] == 0)
        scored = h_alive | single                                    # a dead member of a shared class: no claim to check
        out["heads"] = np.stack([(agree & scored).sum(1), scored.sum(1)]).astype(float)
    return out


def fit_instruments(game, episodes) -> tuple[list[PlayerDetector], RuleChecker]:
    """One detector per episode where the game's colours are drawn per build (coins), else one for all;
    the rule checker from all episodes' ground truth."""
    def fit(eps):
        return PlayerDetector.fit([e.frames for e in eps], [e.cells for e in eps], [e.facing for e in eps],
                                  [e.alive for e in eps])
    if game.map_varies:
        detectors = [fit([e]) for e in episodes]
    else:
        detectors = [fit(episodes)] * len(episodes)
    rules = RuleChecker.fit(game.action_names, episodes, torus=bool(game.view.get("torus", False)))
    return detectors, rules


def _cached(cache: str | None, key: list, make) -> dict[str, np.ndarray]:
    """`make()` (a closed-loop rollout), kept in `cache` (a folder, or None) under a digest of `key`:
    scoring again (another metric, another detector) need not dream again."""
    path = None if cache is None else Path(cache) / (hashlib.sha1(json.dumps(key).encode()).hexdigest()[:16] + ".npz")
    if path is not None and path.exists():
        with np.load(path) as f:
            return dict(f)
    start = time.time()
    out = make()
    out["seconds"] = np.array(time.time() - start)  # the dreaming time, kept with the rollout
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **out)
    return out


def checkpoint_id(folder: str | None) -> str:
    """A checkpoint's folder and a digest of its config.json and sprite table (a retrained checkpoint
    in the same folder has another training summary, so its cached rollouts are not reused)."""
    from actionparty_env.model.checkpoint import resolve_checkpoint
    from actionparty_env.model.sprites import SPRITES_FILE
    path = resolve_checkpoint(folder).resolve()
    digest = hashlib.sha1((path / "config.json").read_bytes())
    if (path / SPRITES_FILE).is_file():
        digest.update((path / SPRITES_FILE).read_bytes())
    return f"{path}:{digest.hexdigest()[:12]}"


def table_value(num: np.ndarray, den: np.ndarray, metric: str, h: int) -> float | None:
    """A table entry from per-step sums: pooled over 1..h or at step h (see the module doc)."""
    if h >= len(num):
        return None
    if metric in POOLED:
        n, d = num[1:h + 1].sum(), den[1:h + 1].sum()
    else:
        n, d = num[h], den[h]
    if d == 0:
        return None
    if metric == "psnr":
        mse = n / d
        return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))
    return float(n / d)


def pixel_fidelity(data: str, checkpoint: str | None = None, split: str = "test",
                   horizons=(1, 5, 10, 20, 50, 100), device: str = "cpu", substrates=None, episodes: int = 2,
                   sampling_steps: int = 1, temperature: float = 0.0, ablations: dict[str, str] | None = None,
                   gif_dir: Path | None = None, gifs: int = 3, gif_steps: int = 40, cache: str | None = None,
                   consistent_sprites: bool = True) -> dict:
    """The fidelity metrics (module docstring) of the dream, copy-last, the real frames and each ablation on
    up to `episodes` held-out episodes per substrate, scored from their pixels; the result `main` writes."""
    from actionparty_env.model.checkpoint import load_world_model
    from benchmarks.provenance import git_commit, machine
    from training.store import list_episodes, read_episode, read_meta
    from training.rollout import closed_loop, side_by_side

    catalog = load_catalog()
    if substrates:
        unknown = sorted(set(substrates) - set(catalog))
        if unknown:
            raise ValueError(f"unknown substrates {unknown}")
    folders = {"dream": checkpoint, **(ablations or {})}  # None: the bundled checkpoint
    models = {name: load_world_model(folder, device) for name, folder in folders.items()}
    groups, taken = defaultdict(list), defaultdict(int)
    for key in list_episodes(data, split=split):
        sub = key.split("/")[1]
        if (substrates and sub not in substrates) or sub not in models["dream"].games or taken[sub] >= episodes:
            continue
        taken[sub] += 1
        ep = read_episode(data, key)
        groups[(sub, ep.frames.shape[1:])].append(ep)
    if not groups:
        raise ValueError(f"no {split} episodes of the asked substrates in {data}")
    h_max = max(horizons)
    totals = defaultdict(lambda: defaultdict(lambda: defaultdict(lambda: np.zeros((2, h_max + 1)))))
    info, gif_paths, t0, dream_seconds = {}, [], time.time(), defaultdict(float)
    for (sub, _), eps in tqdm(sorted(groups.items(), key=lambda kv: kv[0][0]), desc="fidelity"):
        game = catalog[sub]
        steps = min(h_max, min(len(e.actions) for e in eps))
        detectors, rules = fit_instruments(game, eps)
        runs = {"real": [e.frames[: steps + 1] for e in eps],
                "copy_last": [np.repeat(e.frames[:1], steps + 1, 0) for e in eps]}
        heads = {}
        for name, model in models.items():
            dream = _cached(cache, [checkpoint_id(folders[name]), sampling_steps, temperature, consistent_sprites,
                                    steps, [e.key for e in eps]],
                            lambda: closed_loop(model, eps, steps, device, sampling_steps, temperature, consistent_sprites))
            dream_seconds[name] += float(dream["seconds"])
            runs[name] = list(dream["frames"])
            heads[name] = [{k: dream[k][b] for k in ("cells", "facing", "alive")} for b in range(len(eps))]
        for b, ep in enumerate(eps):
            real = {"frames": ep.frames, "actions": ep.actions.astype(np.int64), "cells": ep.cells[: steps + 1],
                    "facing": ep.facing[: steps + 1], "alive": ep.alive[: steps + 1]}
            for run, frames in runs.items():
                scores = score_episode(detectors[b], rules, real, frames[b], heads[run][b] if run in heads else None)
                for metric, arr in scores.items():
                    for where in (sub, "overall"):
                        totals[run][where][metric][:, : steps + 1] += arr
        det = detectors[0]
        info[sub] = {"episodes": len(eps), "steps": steps, "players": det.num_players,
                     "identity_visible": det.identity_visible, "catalog_identity_visible": game.identity_visible,
                     "classes": det.classes.tolist(), "templates": det.num_templates,
                     "passable_patches": len(rules.passable), "keys": [e.key for e in eps]}
        if gif_dir is not None and len(gif_paths) < gifs:
            import imageio.v3 as iio
            path = Path(gif_dir) / f"{sub}.gif"
            path.parent.mkdir(parents=True, exist_ok=True)
            n = min(gif_steps, steps) + 1
            iio.imwrite(path, side_by_side(eps[0].frames[:n], runs["dream"][0][:n]), duration=150, loop=0)
            gif_paths.append(str(path))
    result = {"meta": {"checkpoint": str(checkpoint) if checkpoint else "bundled default", "data": str(data),
                       "split": split, "horizons": list(horizons), "device": str(device),
                       "device_name": torch.cuda.get_device_name() if str(device).startswith("cuda") else
                       f"{machine()['cpu']}, {os.cpu_count()} cores",
                       "sampling_steps": sampling_steps, "temperature": temperature, "seconds": time.time() - t0,
                       "consistent_sprites": consistent_sprites,
                       "dream_seconds": dict(dream_seconds), "cache": cache,
                       "episodes": sum(len(v) for v in groups.values()), "cell_tolerance": CELL_TOLERANCE,
                       "templates_from": "the test episodes' own real frames", "gifs": gif_paths,
                       "commit": git_commit()},
              "paper": PAPER, "substrates": info, "runs": {}}
    plan = read_meta(data).get("plan", {}).get(split, {})  # how the recorder made these episodes
    for sub in info:
        info[sub]["recorded"] = plan.get(sub)
    for run, per in totals.items():
        result["runs"][run] = {}
        for where, metrics in per.items():
            table = {f"{m}@{h}": table_value(metrics[m if m != "psnr" else "sqerr"][0],
                                             metrics[m if m != "psnr" else "sqerr"][1], m, h)
                     for m in METRICS + ("ghosts", "lost") for h in horizons}
            curves = {m: [[int(x) if float(x).is_integer() else round(float(x), 1) for x in a] for a in metrics[m]]
                      for m in metrics}
            result["runs"][run][where] = {"table": table, "curves": curves}
    return result


RUN_ORDER = ("dream", "copy_last", "real")


def _fmt(v) -> str:
    return "-" if v is None else (f"{v:.1f}" if abs(v) > 2 else f"{v:.3f}")


def to_markdown(result: dict) -> str:
    hs = result["meta"]["horizons"]
    h_paper = PAPER["horizon"] if PAPER["horizon"] in hs else hs[-1]
    runs = [r for r in RUN_ORDER if r in result["runs"]] + sorted(set(result["runs"]) - set(RUN_ORDER))
    label = {"dream": "dream (this checkpoint)", "copy_last": "copy-last-frame baseline",
             "real": "real frames (detector + rules ceiling)"}
    cols = list(dict.fromkeys([f"follow@{h_paper}", f"preserve@{h_paper}", f"follow@{hs[-1]}", f"preserve@{hs[-1]}",
                               f"follow_mt@{h_paper}", f"traj@{h_paper}", f"traj@{hs[-1]}", f"heads@{hs[-1]}"]))
    lines = [f"## Overall, beside the paper (action-following and subject preservation over {h_paper} steps)", "",
             "| model | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for r in runs:
        t = result["runs"][r]["overall"]["table"]
        lines.append(f"| {label.get(r, r)} | " + " | ".join(_fmt(t.get(c)) for c in cols) + " |")
    paper = {f"follow@{PAPER['horizon']}": PAPER["follow"], f"preserve@{PAPER['horizon']}": PAPER["preserve"]}
    lines.append(f"| {PAPER['label']} | " + " | ".join(_fmt(paper.get(c)) for c in cols) + " |")
    lines += ["", "## Overall by horizon", "",
              "| model | metric | " + " | ".join(f"h={h}" for h in hs) + " |", "|---|---|" + "---|" * len(hs)]
    for r in runs:
        t = result["runs"][r]["overall"]["table"]
        for m in METRICS + ("ghosts", "lost"):
            if all(t.get(f"{m}@{h}") is None for h in hs):
                continue
            lines.append(f"| {r} | {m} | " + " | ".join(_fmt(t.get(f"{m}@{h}")) for h in hs) + " |")
    hs_sub = [h for h in hs if h in (1, h_paper, hs[-1])]
    cols = [f"{m}@{h}" for m in ("follow", "preserve", "traj", "cell") for h in hs_sub]
    lines += ["", "## Per substrate", "",
              "identity: `visible` where the detector tells every player apart; `shared` where players share "
              "colours (scored on cell and facing only).", "",
              "| substrate | identity | run | " + " | ".join(cols) + " |", "|---|---|---|" + "---|" * len(cols)]
    for sub in sorted(result["substrates"]):
        ident = "visible" if result["substrates"][sub]["identity_visible"] else "shared"
        for r in runs:
            t = result["runs"][r].get(sub, {}).get("table", {})
            lines.append(f"| {sub} | {ident} | {r} | " + " | ".join(_fmt(t.get(c)) for c in cols) + " |")
    return "\n".join(lines)


def _recorded(result: dict) -> str:
    """'recorded with ...; ' from the dataset's recorder plan, where all substrates share one."""
    plans = {json.dumps(v.get("recorded"), sort_keys=True) for v in result["substrates"].values()}
    if len(plans) != 1 or plans == {"null"}:
        return ""
    p = json.loads(plans.pop())
    return f"recorded {p['steps']} steps each, policy `{p['policy']}`, base seed {p['seed']}; "


def write_results(result: dict, out: str) -> list[Path]:
    """JSON, markdown and the horizon plot under `out` (a path prefix)."""
    prefix = Path(out)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    # Not with_suffix: it would cut a tag holding a dot (h200_v1.5 -> h200_v1.json).
    paths = [Path(f"{prefix}.json"), Path(f"{prefix}.md"), Path(f"{prefix}_horizons.png")]
    paths[0].write_text(json.dumps(result, indent=1))
    meta = result["meta"]
    paths[1].write_text(
        f"# Fidelity of the dream to the real Melting Pot, from pixels ({meta['device_name']})\n\n"
        f"Command: `{meta.get('command', 'python -m benchmarks.fidelity')}`; commit {meta['commit']}; "
        f"{meta['episodes']} {meta['split']} episodes, {len(result['substrates'])} substrates; "
        f"{_recorded(result)}{meta['seconds']:.0f} s, dreaming {sum(meta.get('dream_seconds', {}).values()):.0f} s"
        f"{' (timed when the rollouts were made; kept in the --cache folder)' if meta.get('cache') else ''}. Metrics are defined in benchmarks/fidelity.py; detector templates from "
        f"{meta['templates_from']}.\n\n{to_markdown(result)}\n")
    try:
        from benchmarks.plots import plot_horizons
    except ImportError as e:  # matplotlib is the `training` extra: the figures come from the JSON later
        print(f"no plot ({e}); make it with: python -m benchmarks.plots {paths[0]}")
        return paths[:2]
    plot_horizons(result, paths[2])
    return paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="actionparty benchmark fidelity", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="LMDB dataset folder with held-out episodes")
    p.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the bundled one)")
    p.add_argument("--split", default="test")
    p.add_argument("--horizons", type=int, nargs="+", default=[1, 5, 10, 20, 50, 100])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--substrates", default=None, help="comma-separated (default: all in the data)")
    p.add_argument("--episodes", type=int, default=2, help="episodes per substrate at most")
    p.add_argument("--sampling-steps", type=int, default=1)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--ablation", action="append", default=[], metavar="NAME=DIR",
                   help="another checkpoint scored on the same episodes (e.g. no_rope=DIR); repeatable")
    p.add_argument("--free-sprites", action="store_true",
                   help="draw frames without the sprite constraint (actionparty_env/model/sprites.py)")
    p.add_argument("--gifs", type=int, default=3, help="real | dream GIFs to write (first substrates)")
    p.add_argument("--gif-steps", type=int, default=40, help="steps shown in each GIF")
    p.add_argument("--cache", default=None, help="keep the dreamed rollouts here (re-scoring needs no dreaming)")
    p.add_argument("--out-dir", default="benchmarks/results")
    p.add_argument("--tag", default=None, help="results files fidelity_<tag>.json/.md/_horizons.png/_gifs "
                   "(default: the device type)")
    args = p.parse_args(argv)
    if min(args.horizons) < 1 or args.episodes < 1:
        p.error("--horizons and --episodes must be >= 1")
    if any("=" not in a for a in args.ablation):
        p.error("--ablation takes NAME=DIR")
    out = Path(args.out_dir) / f"fidelity_{args.tag or torch.device(args.device).type}"
    try:
        result = pixel_fidelity(args.data, args.checkpoint, args.split, tuple(sorted(set(args.horizons))),
                                args.device, args.substrates.split(",") if args.substrates else None, args.episodes,
                                args.sampling_steps, args.temperature, dict(a.split("=", 1) for a in args.ablation),
                                gif_dir=Path(f"{out}_gifs"), gifs=args.gifs, gif_steps=args.gif_steps,
                                cache=args.cache, consistent_sprites=not args.free_sprites)
    except ValueError as e:
        p.error(str(e))
    result["meta"]["command"] = "python -m benchmarks.fidelity " + " ".join(sys.argv[1:] if argv is None else argv)
    for path in write_results(result, str(out)):
        print("wrote", path)
    print(to_markdown(result).split("\n## Overall by horizon")[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
