"""`actionparty benchmark dynamics`: does the dream do what the game does (rewards, deaths, respawns,
world changes, episode ends) under the same actions as the real game?

    python -m benchmarks.dynamics --data DATA [--split test] [--episodes 2] [--steps 100] [--device auto] \\
        [--checkpoint DIR] [--compare NAME=DIR ...] [--decoding calibrated] [--sim-arg KEY=VALUE ...] \\
        [--substrates a,b] [--out-dir benchmarks/results --tag TAG]

On held-out recorded episodes every run starts from the episode's first real frame and player states
and is fed the episode's recorded actions, one step per recorded step (closed loop: a dream's own
frames and states feed back). Runs: `real` (the recorded episode itself), `dream` (the `--checkpoint`,
default the bundled one, behind `DreamSimulator`), one run per `--compare NAME=DIR` checkpoint, and
`copy_last` (`CopyLastFrameSimulator`: frame and states never change, rewards 0: the floor). Every run
is scored by the same function (`episode_metrics`) from its own frames, player states and rewards.
Simulator options go to every dream unchanged: `--sampling-steps`, `--temperature`, `--free-sprites`,
`--decoding X` (as `decoding=X`, only when given) and `--sim-arg KEY=VALUE` (VALUE read as JSON where
it parses, else as a string); one the installed DreamSimulator does not take is an error before anything
runs. An episode is scored over its first min(--steps, its length) steps.

Metrics of one episode (S scored steps, N players; counts are over all players together):
- reward events: player-steps with a reward r != 0 (|r| > `--reward-tolerance` where given), per 100
  steps of the episode (not per player-step);
- per-player return: each player's summed reward over the S steps;
- deaths: a player alive at t-1 and not at t (alive True -> False), per 100 steps of the episode;
  respawns: not alive at t-1 and alive at t; dead share: dead player-steps (t = 1..S) / (S x N);
- changed non-player cells: at step t (t-1 -> t) the map cells whose 8x8 patch (or cell code) differs
  from frame t-1, not counting any cell occupied by a live player of that run at t-1 or at t (so a
  player's own movement never counts; what is left is the world: spawns, regrowth, consumption,
  beams, drawn ghosts). A curve over t and its mean per step;
- episode end: the step at which the episode ended within its S steps, or none. A recorded episode
  ends where Melting Pot ended it (header `ended`, shorter than asked); a dream run ends where its
  simulator's StepResult reports `terminated` (or `done`) [B], the first step set; today's DreamSimulator
  has no such output, so its dreams never end (truncated at S, as the dream env's `max_cycles` does).
  A run that ends before the real episode is scored over its own steps.

Aggregates per substrate and overall: each rate pooled over episodes (sum of events / sum of steps x 100,
not a mean of per-episode rates); the run's value beside the real one and the ratio run / real (none
where the real value is 0); `within`: |run - real| <= 20% of real (both 0 counts as within; the issue's
target); per-player returns: mean absolute error and bias (run - real) over all players of all episodes,
and the Pearson correlation of run and real returns across those players (target >= 0.8), undefined
(None in the JSON, with the reason) where either side has no variance or fewer than 2 players; episode
ends: episodes ended, their mean end step, and the share of episodes whose run ends at the same step as
the real one (both not ending counts as agreeing). Overall pools every episode of every substrate
(substrates with more players or steps weigh more); the per-substrate targets are counted beside it.
Writes dynamics_<tag>.json, .md (machine, command, git commit) and .png under --out-dir. With `--cache DIR`
each dream's dynamics (per-step world changes, alive flags, rewards, end) are kept per substrate group,
keyed by the checkpoint's digest, the simulator keywords, the device, the data and the episodes: a killed
run, one with another `--compare` or another `--reward-tolerance` dreams only what is missing.
"""
from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import math
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from actionparty_env.grid import PlayerStates
from actionparty_env.model.codebook import CELL

RATE_METRICS = ("reward_events", "deaths", "respawns")     # per 100 steps of the episode
TARGET_METRICS = ("reward_events", "deaths", "changed_cells")  # the "within 20%" list
RATIO_TOLERANCE = 0.2
TARGET_CORRELATION = 0.8
RUN_ORDER = ("real", "dream", "copy_last")
LABELS = {"reward_events": "reward events / 100 steps", "deaths": "deaths / 100 steps",
          "respawns": "respawns / 100 steps", "dead_share": "dead share of player-steps",
          "changed_cells": "changed non-player cells / step"}


# ----------------------------------------------------------------------------------------------
# The metrics (pure numpy)

def cell_changes(frames: np.ndarray) -> np.ndarray:
    """[S,R,C] bool: which map cells differ from the previous frame. `frames`: pixels uint8
    [S+1,H,W,3] (a cell differs if any of its 8x8x3 values does) or cell codes [S+1,R,C]."""
    a = np.asarray(frames)
    if a.ndim == 4 and a.shape[-1] == 3:
        s1, h, w, _ = a.shape
        if h % CELL or w % CELL:
            raise ValueError(f"frames {a.shape} are not a grid of {CELL}x{CELL} cells")
        cells = a.reshape(s1, h // CELL, CELL, w // CELL, CELL, 3)
        return (cells[1:] != cells[:-1]).any(axis=(2, 4, 5))
    if a.ndim == 3:
        return a[1:] != a[:-1]
    raise ValueError(f"frames must be [T+1,H,W,3] pixels or [T+1,R,C] codes, got shape {a.shape}")


def occupied(cells: np.ndarray, alive: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """[T+1,R,C] bool: the cells of live players (a dead player's cell is meaningless: ignored; so is a
    cell off the map)."""
    c = np.asarray(cells, np.int64)
    t1, n = c.shape[:2]
    on = np.asarray(alive, bool) & (c >= 0).all(-1) & (c[..., 0] < rows) & (c[..., 1] < cols)
    out = np.zeros((t1, rows, cols), bool)
    t_idx = np.repeat(np.arange(t1)[:, None], n, 1)
    out[t_idx[on], c[..., 0][on], c[..., 1][on]] = True
    return out


def world_changes(frames: np.ndarray, cells: np.ndarray, alive: np.ndarray) -> np.ndarray:
    """[S] int: changed non-player cells at each step t = 1..S (cells that differ from frame t-1 and hold
    no live player at t-1 or t). frames [S+1,H,W,3] pixels or [S+1,R,C] codes; cells [S+1,N,2]; alive [S+1,N]."""
    changed = cell_changes(frames)
    occ = occupied(cells, alive, *changed.shape[1:])
    return (changed & ~occ[:-1] & ~occ[1:]).sum((1, 2))


def score_dynamics(changed, alive, rewards, ended_at: int | None = None, reward_tolerance: float = 0.0) -> dict:
    """The metrics of one run of one episode from its per-step world changes [S] (`world_changes`),
    alive [S+1,N], rewards [S,N] (rewards[t] is received on step t -> t+1) and end step (1..S, None if
    it did not end); a reward event is |r| > reward_tolerance (0: r != 0). Counts are raw; rates are
    made by `pool`."""
    rewards = np.asarray(rewards, np.float64)
    alive = np.asarray(alive, bool)
    s, n = rewards.shape
    if alive.shape != (s + 1, n) or len(changed) != s:
        raise ValueError(f"an episode of {s} steps and {n} players needs alive [{s + 1},{n}] and {s} world-change "
                         f"counts; got {alive.shape} and {len(changed)}")
    if ended_at is not None and not 1 <= ended_at <= s:
        raise ValueError(f"ended_at must be in 1..{s} or None, got {ended_at}")
    return {"steps": int(s), "players": int(n),
            "reward_events": int((np.abs(rewards) > reward_tolerance).sum()),
            "deaths": int((alive[:-1] & ~alive[1:]).sum()),
            "respawns": int((~alive[:-1] & alive[1:]).sum()),
            "dead_player_steps": int((~alive[1:]).sum()),
            "returns": [float(x) for x in rewards.sum(0)],
            "changed_cells": [int(x) for x in changed],
            "ended_at": None if ended_at is None else int(ended_at)}


def episode_metrics(frames: np.ndarray, cells: np.ndarray, alive: np.ndarray, rewards: np.ndarray,
                    ended_at: int | None = None, reward_tolerance: float = 0.0) -> dict:
    """The dynamics of one run of one episode (see the module doc): `score_dynamics` of its frames'
    `world_changes`. frames [S+1,H,W,3] pixels or [S+1,R,C] codes; cells [S+1,N,2] (row, col);
    alive [S+1,N]; rewards [S,N]."""
    s, n = np.shape(rewards)
    if len(frames) != s + 1 or np.shape(cells)[:2] != (s + 1, n) or np.shape(alive) != (s + 1, n):
        raise ValueError(f"an episode of {s} steps and {n} players needs frames/cells/alive of {s + 1} steps; got "
                         f"{len(frames)}, {np.shape(cells)}, {np.shape(alive)}")
    return score_dynamics(world_changes(frames, cells, alive), alive, rewards, ended_at, reward_tolerance)


def dynamics_of(run: dict) -> dict:
    """What the metrics need of a run (a `rollout` or `real_run` item), small enough to cache as JSON:
    world changes [S], alive [S+1,N], rewards [S,N], ended_at."""
    return {"changed": [int(x) for x in world_changes(run["frames"], run["cells"], run["alive"])],
            "alive": np.asarray(run["alive"], bool).tolist(), "rewards": np.asarray(run["rewards"], np.float64).tolist(),
            "ended_at": run["ended_at"]}


def pearson(x, y) -> tuple[float, str | None]:
    """(Pearson r, None) or (NaN, why it is undefined): fewer than 2 pairs or no variance on a side."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) != len(y):
        raise ValueError("pearson needs pairs")
    if len(x) < 2:
        return math.nan, "fewer than 2 players"
    dx, dy = x - x.mean(), y - y.mean()
    sx, sy = float(np.sqrt((dx * dx).sum())), float(np.sqrt((dy * dy).sum()))
    if sx <= 1e-12 * max(1.0, float(np.abs(x).max())):
        return math.nan, "the real returns do not vary"
    if sy <= 1e-12 * max(1.0, float(np.abs(y).max())):
        return math.nan, "the run's returns do not vary"
    return float(np.clip((dx * dy).sum() / (sx * sy), -1.0, 1.0)), None


def ratio(run: float, real: float) -> float | None:
    """run / real, None where the real value is 0."""
    return None if real == 0 else float(run / real)


def within(run: float, real: float, tolerance: float = RATIO_TOLERANCE) -> bool:
    """|run - real| <= tolerance x |real| (a real 0 is met only by a 0)."""
    return bool(abs(run - real) <= tolerance * abs(real) + 1e-12)


def pool(episodes: list[dict]) -> dict:
    """The pooled values of a run over episodes (each an `episode_metrics` dict)."""
    steps = sum(e["steps"] for e in episodes)
    player_steps = sum(e["steps"] * e["players"] for e in episodes)
    out = {"episodes": len(episodes), "steps": steps, "player_steps": player_steps}
    for m in RATE_METRICS:
        out[m + "_count"] = sum(e[m] for e in episodes)
        out[m] = 100.0 * out[m + "_count"] / steps if steps else math.nan
    out["dead_share"] = sum(e["dead_player_steps"] for e in episodes) / player_steps if player_steps else math.nan
    out["changed_cells"] = sum(sum(e["changed_cells"]) for e in episodes) / steps if steps else math.nan
    longest = max((e["steps"] for e in episodes), default=0)
    total, count = np.zeros(longest), np.zeros(longest)
    for e in episodes:
        total[: e["steps"]] += e["changed_cells"]
        count[: e["steps"]] += 1
    out["changed_cells_curve"] = [float(v) for v in total / np.maximum(count, 1)]  # mean over episodes at step t
    returns = [r for e in episodes for r in e["returns"]]
    out["mean_return"] = float(np.mean(returns)) if returns else math.nan
    ends = [e["ended_at"] for e in episodes if e["ended_at"] is not None]
    out["ended"] = len(ends)
    out["mean_end_step"] = float(np.mean(ends)) if ends else None
    return out


def compare(real: list[dict], run: list[dict]) -> dict:
    """A run against the real game on the same episodes (lists in the same order)."""
    if len(real) != len(run):
        raise ValueError("compare needs the same episodes")
    p_real, p_run = pool(real), pool(run)
    out = {"ratio": {}, "within": {}}
    for m in RATE_METRICS + ("dead_share", "changed_cells"):
        out["ratio"][m] = ratio(p_run[m], p_real[m])
        out["within"][m] = within(p_run[m], p_real[m])
    x = np.array([r for e in real for r in e["returns"]])
    y = np.array([r for e in run for r in e["returns"]])
    r, why = pearson(x, y)
    out["returns"] = {"mae": float(np.abs(y - x).mean()) if len(x) else math.nan,
                      "bias": float((y - x).mean()) if len(x) else math.nan,
                      "correlation": r, "correlation_undefined": why, "players": int(len(x))}
    out["end_agreement"] = float(np.mean([a["ended_at"] == b["ended_at"] for a, b in zip(real, run)])) if real \
        else math.nan
    out["meets"] = {**{m: out["within"][m] for m in TARGET_METRICS},
                    "return_correlation": None if why else bool(r >= TARGET_CORRELATION)}
    return out


def aggregate(records: list[dict]) -> dict:
    """`records`: one per episode, {"substrate": name, "runs": {run: episode_metrics}} with a "real" run.
    Returns {run: {where: {"values": pool(...), "vs_real": compare(...) (not for real)}}}, where = each
    substrate and "overall"; and "targets": per run, how many substrates meet each target."""
    by_where: dict[str, list[dict]] = defaultdict(list)
    for rec in records:
        by_where[rec["substrate"]].append(rec)
        by_where["overall"].append(rec)
    runs = list(dict.fromkeys(r for rec in records for r in rec["runs"]))
    out: dict = {"runs": {}, "targets": {}}
    for run in runs:
        out["runs"][run] = {}
        for where, recs in by_where.items():
            mine = [rec["runs"][run] for rec in recs if run in rec["runs"]]
            entry = {"values": pool(mine)}
            if run != "real":
                entry["vs_real"] = compare([rec["runs"]["real"] for rec in recs if run in rec["runs"]], mine)
            out["runs"][run][where] = entry
        if run != "real":
            subs = [w for w in out["runs"][run] if w != "overall"]
            meets = {m: [out["runs"][run][w]["vs_real"]["meets"][m] for w in subs]
                     for m in TARGET_METRICS + ("return_correlation",)}
            out["targets"][run] = {m: {"met": sum(v is True for v in vs), "scored": sum(v is not None for v in vs)}
                                   for m, vs in meets.items()}
    return out


def _json_safe(x):
    """NaN / inf -> None (strict JSON), recursively."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


# ----------------------------------------------------------------------------------------------
# Runs

def parse_sim_args(pairs: list[str]) -> dict:
    """KEY=VALUE pairs -> kwargs; VALUE read as JSON where it parses (1, 0.5, true, null), else a string."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"--sim-arg takes KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def check_sim_kwargs(kwargs: dict) -> None:
    """A ValueError naming the keyword the installed DreamSimulator does not take."""
    from actionparty_env.model.sampler import DreamSimulator
    params = inspect.signature(DreamSimulator.__init__).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    fixed = {"self", "model", "game", "num_players", "num_worlds", "device"}
    unknown = [k for k in kwargs if k not in params or k in fixed]
    if unknown:
        takes = ", ".join(k for k in params if k not in fixed)
        raise ValueError(f"DreamSimulator does not take {', '.join(f'{k}=' for k in unknown)} (it takes {takes})")


def rollout(sim, episodes: list, steps: list[int], progress=None) -> list[dict]:
    """Run any `Simulator` (actionparty_env/simulator.py) on B recorded episodes of one substrate and map
    size at once: reset from their first real frame and states, then feed their recorded actions
    (NOOP past an episode's own `steps[b]`, not scored). Returns per episode the run's arrays cut to
    its steps (or to the step at which the run reported its end): frames [S+1,H,W,3], cells, alive,
    rewards [S,N], ended_at."""
    import torch

    b, n = len(episodes), episodes[0].actions.shape[1]
    horizon = max(steps)
    frames, cells, facing, alive = (np.stack([getattr(e, k)[0] for e in episodes])
                                    for k in ("frames", "cells", "facing", "alive"))
    sim.reset(frames, PlayerStates(cells, facing, alive))
    actions = np.zeros((b, horizon, n), np.int64)
    for i, (e, s) in enumerate(zip(episodes, steps)):
        actions[i, :s] = e.actions[:s]
    actions = torch.as_tensor(actions, device=sim.device)
    out = {"frames": [np.stack([e.frames[0] for e in episodes])],
           "cells": [np.stack([e.cells[0] for e in episodes]).astype(np.int64)],
           "alive": [np.stack([e.alive[0] for e in episodes])], "rewards": []}
    ended_at: list[int | None] = [None] * b
    for t in range(horizon):
        res = sim.step(actions[:, t])
        for k in out:
            out[k].append(getattr(res, k).detach().cpu().numpy())
        done = getattr(res, "terminated", None)
        done = getattr(res, "done", None) if done is None else done
        if done is not None:
            done = np.asarray(torch.as_tensor(done).cpu()).reshape(b).astype(bool)
            for i in np.flatnonzero(done):
                if ended_at[i] is None and t < steps[i]:
                    ended_at[i] = t + 1
        if progress is not None:
            progress.update(1)
    arrays = {k: np.stack(v, 1) for k, v in out.items()}
    runs = []
    for i in range(b):
        s = ended_at[i] or steps[i]
        runs.append({"frames": arrays["frames"][i, : s + 1], "cells": arrays["cells"][i, : s + 1],
                     "alive": arrays["alive"][i, : s + 1], "rewards": arrays["rewards"][i, :s],
                     "ended_at": ended_at[i]})
    return runs


def real_run(episode, steps: int) -> dict:
    """The recorded episode as a run over its first `steps` steps (it ended there if Melting Pot ended it)."""
    ended = bool(episode.header.get("ended")) and len(episode.actions) <= steps
    return {"frames": episode.frames[: steps + 1], "cells": episode.cells[: steps + 1],
            "alive": episode.alive[: steps + 1], "rewards": episode.rewards[:steps],
            "ended_at": len(episode.actions) if ended else None}


def compare_dynamics(data: str, checkpoint: str | None = None, split: str = "test", episodes: int = 2, steps: int = 100,
                     device: str = "cpu", substrates=None, compare_with: dict[str, str] | None = None,
                     sim_kwargs: dict | None = None, reward_tolerance: float = 0.0, cache: str | None = None) -> dict:
    """The game dynamics (module docstring) of the real episodes, the dream, each `compare_with` checkpoint
    and copy-last on up to `episodes` held-out episodes per substrate; the result `main` writes."""
    import torch
    from tqdm import tqdm

    from actionparty_env.games import load_catalog
    from actionparty_env.model.checkpoint import load_world_model
    from actionparty_env.model.sampler import DreamSimulator
    from actionparty_env.simulator import CopyLastFrameSimulator
    from benchmarks.fidelity import checkpoint_id
    from benchmarks.provenance import git_commit, machine
    from training.store import list_episodes, read_episode, read_meta

    sim_kwargs = dict(sim_kwargs or {})
    check_sim_kwargs(sim_kwargs)
    catalog = load_catalog()
    if substrates:
        unknown = sorted(set(substrates) - set(catalog))
        if unknown:
            raise ValueError(f"unknown substrates {unknown}")
    folders = {"dream": checkpoint, **(compare_with or {})}
    clash = sorted(set(compare_with or {}) & {"real", "dream", "copy_last"})
    if clash:
        raise ValueError(f"--compare names {clash} are taken by the built-in runs")
    models = {name: load_world_model(folder, device) for name, folder in folders.items()}
    known = set.intersection(*(set(m.games) for m in models.values()))
    groups, taken, skipped = defaultdict(list), defaultdict(int), set()
    for key in list_episodes(data, split=split):
        sub = key.split("/")[1]
        if (substrates and sub not in substrates) or taken[sub] >= episodes:
            continue
        if sub not in known:
            skipped.add(sub)
            continue
        ep = read_episode(data, key)
        if len(ep.actions) == 0:
            continue
        taken[sub] += 1
        groups[(sub, ep.frames.shape[1:])].append(ep)
    if not groups:
        raise ValueError(f"no {split} episodes of the asked substrates (known to every checkpoint) in {data}")
    order = sorted(groups, key=lambda g: (g[0], g[1]))
    lengths = {g: [min(steps, len(e.actions)) for e in groups[g]] for g in order}
    total = sum(max(lengths[g]) for g in order) * (len(models) + 1)
    records, seconds, sim_settings = [], defaultdict(float), {}
    t0 = time.time()
    with tqdm(total=total, desc="dynamics", unit="step") as bar:
        for g in order:
            sub, eps, s_each = g[0], groups[g], lengths[g]
            n = eps[0].actions.shape[1]

            def score(dyn: list[dict]) -> list[dict]:
                return [score_dynamics(np.asarray(d["changed"]), np.asarray(d["alive"], bool).reshape(-1, n),
                                       np.asarray(d["rewards"], np.float64).reshape(-1, n), d["ended_at"],
                                       reward_tolerance) for d in dyn]

            scored = {"real": score([dynamics_of(real_run(e, s)) for e, s in zip(eps, s_each)])}
            for name, model in models.items():
                bar.set_postfix_str(f"{sub} {name}")
                key = [checkpoint_id(folders[name]), sim_kwargs, str(device), str(Path(data).resolve()), s_each,
                       [e.key for e in eps]]
                path = None if cache is None else \
                    Path(cache) / (hashlib.sha1(json.dumps(key).encode()).hexdigest()[:16] + ".json")
                if path is not None and path.exists():
                    entry = json.loads(path.read_text())
                    bar.update(max(s_each))
                else:
                    start = time.time()
                    sim = DreamSimulator(model, sub, n, len(eps), device, **sim_kwargs)
                    entry = {"dynamics": [dynamics_of(r) for r in rollout(sim, eps, s_each, bar)],
                             "seconds": time.time() - start,
                             "settings": {k: getattr(sim, k) for k in ("sampling_steps", "temperature", "decoding")
                                          if isinstance(getattr(sim, k, None), (int, float, str, bool))}
                             | {"sprite_constraint": getattr(sim, "sprites", None) is not None}}
                    if path is not None:
                        path.parent.mkdir(parents=True, exist_ok=True)
                        path.with_suffix(".tmp").write_text(json.dumps(entry))
                        os.replace(path.with_suffix(".tmp"), path)
                scored[name] = score(entry["dynamics"])
                seconds[name] += entry["seconds"]
                sim_settings[name] = entry["settings"]
            bar.set_postfix_str(f"{sub} copy_last")
            copy = CopyLastFrameSimulator(catalog[sub], n, len(eps), device)
            scored["copy_last"] = score([dynamics_of(r) for r in rollout(copy, eps, s_each, bar)])
            for b, ep in enumerate(eps):
                records.append({"substrate": sub, "key": ep.key, "runs": {name: m[b] for name, m in scored.items()}})
    agg = aggregate(records)
    plan = read_meta(data).get("plan", {}).get(split, {})
    info = {}
    for rec in records:
        i = info.setdefault(rec["substrate"], {"episodes": 0, "steps": [], "players": rec["runs"]["real"]["players"],
                                               "keys": [], "recorded": plan.get(rec["substrate"])})
        i["episodes"] += 1
        i["steps"].append(rec["runs"]["real"]["steps"])
        i["keys"].append(rec["key"])
    host = machine()
    meta = {"data": str(data), "split": split, "episodes_per_substrate": episodes, "steps": steps,
            "episodes": len(records), "device": str(device),
            "device_name": torch.cuda.get_device_name(torch.device(device)) if str(device).startswith("cuda")
            else f"{host['cpu']}, {host['cores']} cores",
            "checkpoints": {name: str(folder) if folder else "bundled default" for name, folder in folders.items()},
            "checkpoint_ids": {name: checkpoint_id(folder) for name, folder in folders.items()},  # folder:digest
            "sim_kwargs": sim_kwargs, "simulator": sim_settings, "reward_tolerance": reward_tolerance, "seconds": time.time() - t0,
            "dream_seconds": dict(seconds), "cache": cache, "skipped_substrates": sorted(skipped), "machine": host,
            "commit": git_commit()}
    # Per-episode scalars (curves are kept per substrate only).
    per_episode = [{"substrate": r["substrate"], "key": r["key"],
                    "runs": {name: {k: v for k, v in m.items() if k != "changed_cells"} |
                             {"changed_cells_mean": float(np.mean(m["changed_cells"])) if m["steps"] else None}
                             for name, m in r["runs"].items()}} for r in records]
    targets = {"ratio_tolerance": RATIO_TOLERANCE, "ratio_metrics": list(TARGET_METRICS),
               "return_correlation": TARGET_CORRELATION}
    return _json_safe({"meta": meta, "targets": targets, "substrates": info, "runs": agg["runs"],
                       "targets_met": agg["targets"], "episodes": per_episode})


# ----------------------------------------------------------------------------------------------
# Report

def _runs(result: dict) -> list[str]:
    return [r for r in ("real", "dream") if r in result["runs"]] + \
        [r for r in result["runs"] if r not in RUN_ORDER] + [r for r in ("copy_last",) if r in result["runs"]]


def _f(v, digits=2) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return f"{v:.{digits}f}"


def _cell(entry: dict, metric: str) -> str:
    """'value (ratio)' of a run's metric; the real run: the value."""
    v = entry["values"][metric]
    if "vs_real" not in entry:
        return _f(v)
    r = entry["vs_real"]["ratio"][metric]
    ok = entry["vs_real"]["within"][metric]
    return f"{_f(v)} ({_f(r)}{' ✓' if ok and metric in TARGET_METRICS else ''})" if r is not None else \
        f"{_f(v)} ({'=' if ok else 'real 0'})"


def _corr(entry: dict) -> str:
    if "vs_real" not in entry:
        return "-"
    ret = entry["vs_real"]["returns"]
    return _f(ret["correlation"]) if ret["correlation"] is not None else f"undefined ({ret['correlation_undefined']})"


def to_markdown(result: dict) -> str:
    runs = _runs(result)
    rows = [("reward events / 100 steps", "reward_events"), ("deaths / 100 steps", "deaths"),
            ("respawns / 100 steps", "respawns"), ("dead share of player-steps", "dead_share"),
            ("changed non-player cells / step", "changed_cells")]
    lines = ["## Overall (pooled over every episode)", "",
             "In brackets: run / real; ✓ within 20% of real (a target metric); `=` both 0; `real 0` the real "
             "game has none.", "",
             "| metric | " + " | ".join(runs) + " |", "|---|" + "---|" * len(runs)]
    over = {r: result["runs"][r]["overall"] for r in runs}
    for label, m in rows:
        lines.append(f"| {label} | " + " | ".join(_cell(over[r], m) for r in runs) + " |")
    lines.append("| mean per-player return | " + " | ".join(_f(over[r]["values"]["mean_return"], 3) for r in runs) + " |")
    lines.append("| per-player return MAE | " + " | ".join(
        _f(over[r]["vs_real"]["returns"]["mae"], 3) if "vs_real" in over[r] else "-" for r in runs) + " |")
    lines.append("| per-player return correlation | " + " | ".join(_corr(over[r]) for r in runs) + " |")
    lines.append("| episodes ended (mean end step) | " + " | ".join(
        f"{over[r]['values']['ended']} ({_f(over[r]['values']['mean_end_step'], 1)})" for r in runs) + " |")
    lines.append("| end step agrees with real | " + " | ".join(
        _f(over[r]["vs_real"]["end_agreement"]) if "vs_real" in over[r] else "-" for r in runs) + " |")
    met = result.get("targets_met", {})
    if met:
        names = [("reward_events", "reward events"), ("deaths", "deaths"), ("changed_cells", "world changes"),
                 ("return_correlation", "return correlation >= 0.8")]
        lines += ["", "## Substrates meeting the targets (met / scored)", "",
                  "| run | " + " | ".join(n for _, n in names) + " |", "|---|" + "---|" * len(names)]
        for r in runs:
            if r in met:
                lines.append(f"| {r} | " + " | ".join(f"{met[r][m]['met']} / {met[r][m]['scored']}" for m, _ in names) + " |")
    cols = ["reward events / 100", "deaths / 100", "respawns / 100", "changed cells / step", "mean return",
            "return MAE", "return r", "ended"]
    lines += ["", "## Per substrate", "", "| substrate | episodes | run | " + " | ".join(cols) + " |",
              "|---|---|---|" + "---|" * len(cols)]
    for sub in sorted(result["substrates"]):
        for r in runs:
            e = result["runs"][r].get(sub)
            if e is None:
                continue
            vs = e.get("vs_real")
            lines.append(f"| {sub} | {e['values']['episodes']} | {r} | " + " | ".join([
                _cell(e, "reward_events"), _cell(e, "deaths"), _cell(e, "respawns"), _cell(e, "changed_cells"),
                _f(e["values"]["mean_return"], 3), _f(vs["returns"]["mae"], 3) if vs else "-", _corr(e),
                str(e["values"]["ended"])]) + " |")
    return "\n".join(lines)


def plot_dynamics(result: dict, path: str | Path) -> Path:
    """Per substrate (and overall) bars of each run's reward events, deaths, respawns and changed cells;
    changed cells over time, overall and for the substrates that change most."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmarks.plots import OTHER_COLORS, STYLE

    runs = _runs(result)
    others = iter(OTHER_COLORS * 4)
    colour = {r: (STYLE.get(r) or {}).get("color") or next(others) for r in runs}
    colour["real"] = "tab:green"
    wheres = sorted(result["substrates"]) + ["overall"]
    width = max(10.0, 0.28 * len(wheres) * len(runs) + 2)
    fig = plt.figure(figsize=(width, 16), layout="constrained")
    grid = fig.add_gridspec(5, 2, height_ratios=[1, 1, 1, 1.4, 1.4])
    x = np.arange(len(wheres))
    bar = 0.8 / len(runs)
    for row, metric in enumerate(("reward_events", "deaths", "respawns", "changed_cells")):
        ax = fig.add_subplot(grid[row, :])
        for j, r in enumerate(runs):
            y = [(result["runs"][r].get(w) or {}).get("values", {}).get(metric) for w in wheres]
            ax.bar(x + (j - (len(runs) - 1) / 2) * bar, [np.nan if v is None else v for v in y], bar,
                   label=r, color=colour[r], alpha=0.5 if r == "copy_last" else 1.0)
        ax.set_xticks(x, wheres if row == 3 else [""] * len(wheres), rotation=60, ha="right", fontsize=8)
        ax.set_ylabel(LABELS[metric])
        ax.set_ylim(bottom=0)
        ax.grid(axis="y", alpha=0.3)
        if row == 0:
            ax.legend(ncol=len(runs))
    ax = fig.add_subplot(grid[4, 0])
    for r in runs:
        curve = result["runs"][r]["overall"]["values"]["changed_cells_curve"]
        ax.plot(np.arange(1, len(curve) + 1), curve, label=r, color=colour[r],
                linestyle="--" if r == "copy_last" else "-")
    ax.set_title("changed non-player cells per step, overall (mean over episodes)")
    ax.set_xlabel("step t (closed loop)")
    ax.grid(alpha=0.3)
    ax.legend()
    ax = fig.add_subplot(grid[4, 1])
    subs = sorted(result["substrates"], key=lambda s: -(result["runs"]["real"][s]["values"]["changed_cells"] or 0))[:6]
    model = "dream" if "dream" in runs else runs[-1]
    for k, s in enumerate(subs):
        c = f"C{k}"
        for r, style in (("real", "-"), (model, "--")):
            curve = result["runs"][r][s]["values"]["changed_cells_curve"]
            ax.plot(np.arange(1, len(curve) + 1), curve, style, color=c, label=f"{s} ({r})")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_title(f"per substrate: real (solid) vs {model} (dashed)")
    ax.set_xlabel("step t (closed loop)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    meta = result["meta"]
    fig.suptitle(f"Dynamics, real vs dream under the same actions ({meta['episodes']} {meta['split']} episodes, "
                 f"up to {meta['steps']} steps, {len(result['substrates'])} substrates, {meta['device_name']})")
    path = Path(path)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def write_results(result: dict, out: str | Path, plot: bool = True) -> list[Path]:
    """dynamics_<tag>.json, .md and (with `plot`) .png under the prefix `out`."""
    prefix = Path(out)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    paths = [Path(f"{prefix}.{ext}") for ext in ("json", "md", "png")]  # a tag may hold a dot (tol0.5)
    paths[0].write_text(json.dumps(result, indent=1, allow_nan=False))
    meta, host = result["meta"], result["meta"]["machine"]
    ids = meta.get("checkpoint_ids", {})
    sims = "; ".join(f"{name}: {meta['checkpoints'].get(name, '?')}"
                     f"{' (config digest ' + ids[name].rsplit(':', 1)[1] + ')' if name in ids else ''}, " +
                     ", ".join(f"{k}={v}" for k, v in s.items()) for name, s in meta["simulator"].items())
    tol = meta.get("reward_tolerance") or 0
    event = f"|r| > {tol}" if tol else "r != 0"
    paths[1].write_text(
        f"# Dynamics of the dream beside the real Melting Pot ({meta['device_name']})\n\n"
        f"Command: `{meta.get('command', 'python -m benchmarks.dynamics')}`; commit {meta['commit']}; "
        f"{host['cpu']}, {host['cores']} cores, Python {host['python']}, {host['date']}, load {host['load_average_1min']}. "
        f"{meta['episodes']} {meta['split']} episodes of {len(result['substrates'])} substrates (at most "
        f"{meta['episodes_per_substrate']} each), each scored over its first {meta['steps']} steps or fewer; "
        f"{meta['seconds']:.0f} s, dreaming {sum(meta['dream_seconds'].values()):.0f} s"
        f"{' (timed when each dream was made; kept in the --cache folder)' if meta.get('cache') else ''}. Simulators: {sims}; "
        f"extra keywords {meta['sim_kwargs'] or 'none'}. Same recorded actions in every run, closed loop from the "
        "real first frame; rates are per 100 steps of the episode (all players together), pooled over episodes; "
        f"a reward event is a player-step with {event}; "
        "changed cells exclude cells of the run's own live players before and after the step. Definitions: "
        "benchmarks/dynamics.py. Targets (issue 12): within 20% of real for reward events, deaths and "
        "world changes, per-player return correlation >= 0.8.\n\n" + to_markdown(result) + "\n")
    if not plot:
        return paths[:2]
    try:
        plot_dynamics(result, paths[2])
    except ImportError as e:  # matplotlib is the `training` extra
        print(f"no plot ({e})")
        return paths[:2]
    return paths


def main(argv: list[str] | None = None) -> int:
    import torch

    p = argparse.ArgumentParser(prog="actionparty benchmark dynamics", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="LMDB dataset folder with held-out episodes")
    p.add_argument("--split", default="test")
    p.add_argument("--checkpoint", default=None, help="checkpoint folder of the `dream` run (default: the bundled one)")
    p.add_argument("--compare", action="append", default=[], metavar="NAME=DIR",
                   help="another checkpoint dreamed on the same episodes, as run NAME; repeatable")
    p.add_argument("--episodes", type=int, default=2, help="episodes per substrate at most")
    p.add_argument("--steps", type=int, default=100, help="steps per episode at most")
    p.add_argument("--substrates", default=None, help="comma-separated (default: all in the data)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    p.add_argument("--sampling-steps", type=int, default=None, help="DreamSimulator's (default: its own)")
    p.add_argument("--temperature", type=float, default=None, help="DreamSimulator's (default: its own)")
    p.add_argument("--free-sprites", action="store_true", help="draw without the sprite constraint")
    p.add_argument("--decoding", default=None, help="passed as DreamSimulator(decoding=...) when given")
    p.add_argument("--sim-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="any other DreamSimulator keyword (VALUE as JSON where it parses); repeatable")
    p.add_argument("--reward-tolerance", type=float, default=0.0,
                   help="a reward event is |r| > this (default 0: r != 0, the game's own events; a regression "
                        "head that never says exactly 0 scores an event at every step)")
    p.add_argument("--cache", default=None, help="keep each dream's dynamics per substrate here: a rerun (killed, "
                   "with another --compare or --reward-tolerance) dreams only what is missing")
    p.add_argument("--no-plot", action="store_true", help="write the JSON and markdown only")
    p.add_argument("--out-dir", default="benchmarks/results")
    p.add_argument("--tag", default=None, help="results files dynamics_<tag>.json/.md/.png (default: the device type)")
    args = p.parse_args(argv)
    if args.episodes < 1 or args.steps < 1:
        p.error("--episodes and --steps must be >= 1")
    if any("=" not in a for a in args.compare):
        p.error("--compare takes NAME=DIR")
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    try:
        kwargs = parse_sim_args(args.sim_arg)
        for key, value in (("sampling_steps", args.sampling_steps), ("temperature", args.temperature),
                           ("decoding", args.decoding)):
            if value is not None:
                kwargs[key] = value
        if args.free_sprites:
            kwargs["consistent_sprites"] = False
        check_sim_kwargs(kwargs)
        result = compare_dynamics(args.data, args.checkpoint, args.split, args.episodes, args.steps, device,
                                  args.substrates.split(",") if args.substrates else None,
                                  dict(a.split("=", 1) for a in args.compare), kwargs, args.reward_tolerance,
                                  args.cache)
    except ValueError as e:
        p.error(str(e))
    result["meta"]["command"] = "python -m benchmarks.dynamics " + " ".join(sys.argv[1:] if argv is None else argv)
    out = Path(args.out_dir) / f"dynamics_{args.tag or torch.device(device).type}"
    for path in write_results(result, out, plot=not args.no_plot):
        print("wrote", path)
    print(to_markdown(result).split("\n## Substrates meeting")[0])
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--replot"]:  # python -m benchmarks.dynamics --replot RESULTS.json[.gz]: the plot beside it
        from benchmarks.provenance import load_results, results_stem
        for name in sys.argv[2:]:
            print("wrote", plot_dynamics(load_results(name), Path(name).with_name(results_stem(name) + ".png")))
        raise SystemExit(0)
    raise SystemExit(main())
