"""What the recorder's behaviour policies put into the data: events, deaths, meetings, blocked moves.

    python -m benchmarks.behaviour                      # mix vs rl_mix, 6 substrates, 2 x 200 steps
    python -m benchmarks.behaviour --policies mix,rl_mix --substrates coins,clean_up --episodes 2 \\
        --steps 200 [--data DIR] [--out-suffix cpu]

Each policy's episodes are recorded by the real recorder (`training.record.record`, 1 worker, base
seed 0, train split) into its own LMDB folder (a temporary one, or DIR/<policy> to keep and reuse:
a rerun resumes), then read back (`training.store.list_episodes` / `read_episode`) and scored per
substrate and policy, summed over the episodes:

- reward events / 100 steps: player-steps with a reward != 0, per 100 world steps;
- deaths / 100 steps: players alive at t and not at t+1, per 100 world steps;
- near 1 / near 2: the share of live player-steps with another live player within Manhattan distance
  1 (the 4-neighbourhood) / 2 (wrapping where the map is a torus);
- blocked: the share of move actions (FORWARD, BACKWARD, STEP_*) of players alive before and after
  whose cell did not change (a wall, another player, a refused move such as predator_prey's stamina);
- by a player: the share of those move actions that did not move while another live player stood in
  the cell moved into (players blocking each other);
- use: the share of all actions that are the substrate's own `use` actions (zap, clean, interact, ...);
- entropy: the action histogram's entropy over log(number of actions) (1 = uniform over all actions).

Writes benchmarks/results/behaviour_<suffix>.md and .json (machine, command, commit).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from actionparty_env.games import get_game
from benchmarks.provenance import git_commit, machine
from training.store import list_episodes, read_episode
from training.policies import DIRS, ActionTable
from training.record import RecordConfig, record

RESULTS = Path(__file__).resolve().parent / "results"
SUBSTRATES = ("coins", "clean_up", "commons_harvest__open", "predator_prey__open", "territory__rooms",
              "prisoners_dilemma_in_the_matrix__arena")
NOTE = ("Melting Pot does not replay bit for bit (spawn order changes per build, MELTINGPOT.md), so a "
        "rerun of the same command gives somewhat different numbers, the same policy included; with 2 "
        "episodes per substrate, per-substrate rates of rare events (deaths, reward events in the "
        "matrix games) are noisy: compare the means, or record more episodes (--episodes).")
COLUMNS = ("reward_events_per_100", "deaths_per_100", "near1", "near2", "blocked", "blocked_by_player",
           "use", "entropy")


def episode_counts(ep, torus: bool, table: ActionTable) -> dict:
    """Raw counts of one episode (summed over episodes, then turned into rates by `rates`)."""
    t, n = ep.actions.shape
    kinds = table.kinds
    alive, cells = ep.alive.astype(bool), ep.cells.astype(np.int64)
    size = np.array([ep.header["map_rows"], ep.header["map_cols"]])
    d = cells[:, None, :, :] - cells[:, :, None, :]                      # [T+1, N, N, 2]
    if torus:
        d = (d + size // 2) % size - size // 2
    dist = np.abs(d).sum(-1).astype(float)
    both = alive[:, None, :] & alive[:, :, None] & ~np.eye(n, dtype=bool)[None]
    dist[~both] = np.inf
    nearest = dist.min(-1)                                               # [T+1, N]
    is_move = np.isin(np.array(kinds)[ep.actions.astype(np.int64)], ("forward", "step"))
    live_move = is_move & alive[:-1] & alive[1:]
    stayed = (cells[1:] == cells[:-1]).all(-1)
    offset = table.offset[ep.actions.astype(np.int64)]                  # [T, N], -1 for non-moves
    target = cells[:-1] + DIRS[(ep.facing[:-1].astype(np.int64) + np.maximum(offset, 0)) % 4]
    if torus:
        target = target % size
    occupied = ((target[:, :, None, :] == cells[:-1, None, :, :]).all(-1)
                & alive[:-1, None, :] & ~np.eye(n, dtype=bool)[None]).any(-1)   # [T, N]
    hist = np.bincount(ep.actions.astype(np.int64).ravel(), minlength=len(kinds))
    return {"steps": t, "player_steps": int(alive.sum()),
            "reward_events": int((ep.rewards != 0).sum()),
            "deaths": int((alive[:-1] & ~alive[1:]).sum()),
            "near1": int((nearest[alive] <= 1).sum()), "near2": int((nearest[alive] <= 2).sum()),
            "moves": int(live_move.sum()), "blocked": int((live_move & stayed).sum()),
            "blocked_by_player": int((live_move & stayed & occupied).sum()),
            "use": int(np.isin(np.array(kinds)[ep.actions.astype(np.int64)], ("use",)).sum()),
            "actions": int(ep.actions.size), "hist": hist}


def add(a: dict | None, b: dict) -> dict:
    return dict(b) if a is None else {k: a[k] + b[k] for k in a}


def rates(c: dict) -> dict:
    p = c["hist"] / max(c["hist"].sum(), 1)
    nz = p[p > 0]
    return {"reward_events_per_100": 100 * c["reward_events"] / max(c["steps"], 1),
            "deaths_per_100": 100 * c["deaths"] / max(c["steps"], 1),
            "near1": c["near1"] / max(c["player_steps"], 1), "near2": c["near2"] / max(c["player_steps"], 1),
            "blocked": c["blocked"] / max(c["moves"], 1),
            "blocked_by_player": c["blocked_by_player"] / max(c["moves"], 1),
            "use": c["use"] / max(c["actions"], 1),
            "entropy": float(-(nz * np.log(nz)).sum() / np.log(len(p))) if len(p) > 1 else 1.0,
            "steps": c["steps"]}


def score(path: str, substrates: tuple[str, ...]) -> dict:
    """{substrate: rates} over every episode of the dataset at `path`, plus 'mean' (over substrates)."""
    out = {}
    for sub in substrates:
        spec = get_game(sub)
        table, torus = ActionTable(spec.action_set), bool(spec.view.get("torus", False))
        total = None
        for key in list_episodes(path, substrate=sub):
            total = add(total, episode_counts(read_episode(path, key), torus, table))
        if total is not None:
            out[sub] = rates(total)
    out["mean"] = {k: float(np.mean([r[k] for r in out.values()])) for k in (*COLUMNS, "steps")}
    return out


def run(policies: tuple[str, ...], substrates: tuple[str, ...], episodes: int, steps: int,
        data: str | None) -> dict:
    results, seconds, behaviours = {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="actionparty-behaviour-") as tmp:
        for policy in policies:
            path = str(Path(data or tmp) / policy)
            t0 = time.time()
            summary = record(RecordConfig(path, substrates, episodes, steps, workers=1, seed=0,
                                          policy=policy))
            seconds[policy] = time.time() - t0
            print(summary)
            if summary.failed:
                print(f"warning: {policy}: failed substrates {summary.failed}", file=sys.stderr)
            results[policy] = score(path, substrates)
            behaviours[policy] = {
                sub: [read_episode(path, k).header["policy"]["behaviours"]
                      for k in list_episodes(path, substrate=sub)] for sub in substrates}
    return {"results": results, "record_seconds": seconds, "behaviours": behaviours}


def to_markdown(out: dict) -> str:
    m, res = out["machine"], out["results"]
    policies = list(res)
    lines = [f"# Behaviour policies: what they put into the recorded data ({out['suffix']})", "",
             f"Machine: {m['cpu']}, {m['cores']} cores (load average {m['load_average_1min']:.1f} at start); "
             f"Python {m['python']}; {m['date']}.",
             f"Command: `{out['command']}`; git commit {out['commit']}.", "",
             f"{len(out['substrates'])} substrates x {out['episodes']} episodes x {out['steps']} steps per "
             f"policy, recorded by `training.record` (1 worker, base seed 0, train split) and read back "
             f"from the LMDB. Rates per 100 world steps; shares of live player-steps with another live "
             f"player within Manhattan distance 1 / 2 (near 1 / near 2), of live move actions that did "
             f"not move (blocked) and that did not move into a cell another live player held (by a "
             f"player), and of all actions (use); entropy of the action histogram / log(actions). "
             f"Definitions: `benchmarks/behaviour.py`.", "",
             "| substrate | policy | reward events / 100 steps | deaths / 100 steps | near 1 | near 2 "
             "| blocked moves | by a player | use actions | action entropy |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for sub in [*out["substrates"], "mean"]:
        for policy in policies:
            r = res[policy].get(sub)
            if r is None:
                lines.append(f"| {sub} | {policy} | failed | | | | | | | |")
                continue
            name = "**mean**" if sub == "mean" else sub
            lines.append(f"| {name} | {policy} | {r['reward_events_per_100']:.1f} | {r['deaths_per_100']:.2f} "
                         f"| {r['near1']:.3f} | {r['near2']:.3f} | {r['blocked']:.3f} "
                         f"| {r['blocked_by_player']:.3f} | {r['use']:.3f} "
                         f"| {r['entropy']:.3f} |")
    lines += ["", "Behaviours drawn (players, summed over the episodes):", ""]
    for policy, subs in out["behaviours"].items():
        for sub, eps in subs.items():
            if any(eps):
                counts = {}
                for e in eps:
                    for b in e:
                        counts[b] = counts.get(b, 0) + 1
                lines.append(f"- {policy}, {sub}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    lines += ["", "Recording time: " + ", ".join(f"{p} {s:.0f} s" for p, s in out["record_seconds"].items())
              + " (engine builds, steps, zlib and LMDB on one worker, on a shared machine).", "",
              NOTE, ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--policies", default="mix,rl_mix")
    ap.add_argument("--substrates", default=",".join(SUBSTRATES))
    ap.add_argument("--episodes", type=int, default=2)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--data", help="keep the recordings in DIR/<policy> (a rerun resumes them)")
    ap.add_argument("--out-suffix", default="cpu")
    args = ap.parse_args(argv)
    policies = tuple(p.strip() for p in args.policies.split(",") if p.strip())
    substrates = tuple(s.strip() for s in args.substrates.split(",") if s.strip())
    prov = machine()
    out = run(policies, substrates, args.episodes, args.steps, args.data)
    out.update({"suffix": args.out_suffix, "machine": prov, "commit": git_commit(),
                "command": " ".join(["python -m benchmarks.behaviour",
                                     *(argv if argv is not None else sys.argv[1:])]),
                "substrates": list(substrates), "episodes": args.episodes, "steps": args.steps})
    md = to_markdown(out)
    print(md)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"behaviour_{args.out_suffix}.md").write_text(md)
    (RESULTS / f"behaviour_{args.out_suffix}.json").write_text(json.dumps(out, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
