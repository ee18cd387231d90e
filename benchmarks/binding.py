"""Binding, not leakage: does changing the movement action of a player j far from player i leave i's
predicted next cell and facing unchanged?

    python -m benchmarks.binding                                  # bundled start states, CPU
    python -m benchmarks.binding --data DIR --split test          # plus states of held-out episodes

For every held-out state (the checkpoint's start states, and states at `--times` of recorded
episodes of `--split`), B worlds start from that state in one sampler call: world 0 is the reference
(every player NOOP); each other world gives one mover p one movement action (FORWARD, BACKWARD,
STEP_LEFT, STEP_RIGHT, TURN_LEFT, TURN_RIGHT), everyone else NOOP. Two steps are dreamed (the second
with every player NOOP). Counted, against the reference world:
- binding@1: for live players i farther than `--min-distance` cells (Chebyshev) from a live mover p,
  the share whose predicted cell and facing after step 1 are unchanged. By construction (attention
  masks, docs/ARCHITECTURE.md) a_k^p cannot reach i's action token at step k, so this must be 1.0.
- binding@2: the same after step 2, when p's move has entered the generated frame that i's next
  prediction reads. Not guaranteed by the masks; a share below 1 would be leakage through the picture.
- control: the share of movers whose own prediction after step 1 changes (turns and steps apart):
  the model does follow the action it is given, so an unchanged i above is binding, not deafness.
- near@1, near@2: i within `--min-distance` of p (may legitimately interact, e.g. blocking), for context.
Writes benchmarks/results/binding_<device>.json and .md with the machine, command and commit.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from actionparty_env.games import get_game
from actionparty_env.grid import CELL, PlayerStates
from actionparty_env.model.checkpoint import DEFAULT_CHECKPOINT, load_world_model
from actionparty_env.model.sampler import DreamSimulator
from actionparty_env.simulator import StartStates
from benchmarks.provenance import git_commit, machine

RESULTS = Path(__file__).resolve().parent / "results"
MOVES = ("FORWARD", "BACKWARD", "STEP_LEFT", "STEP_RIGHT", "TURN_LEFT", "TURN_RIGHT")
COUNTS = ("far", "far_same1", "far_same2", "near", "near_same1", "near_same2",
          "turn", "turn_changed", "step", "step_changed")


@dataclass
class HeldOutState:
    substrate: str
    source: str          # "start/j" or "<episode key>@t"
    frame: np.ndarray      # uint8 [H,W,3]
    players: PlayerStates  # numpy [N,2], [N], [N] bool


def held_out_states(checkpoint: Path, starts: int, data: str | None, split: str, times: list[int],
                    substrates: list[str]) -> list[HeldOutState]:
    """The first `starts` start states per substrate, plus states at `times` of every episode of `split`."""
    out = []
    bundled = StartStates.load(checkpoint)
    for sub in substrates:
        for j, s in enumerate(bundled.states.get(sub, [])[:starts]):
            out.append(HeldOutState(sub, f"start/{j}", s.frame, s.players))
    if data:
        from training.store import list_episodes, read_episode  # noqa: PLC0415 (LMDB only with --data)

        for key in list_episodes(data, split=split):
            ep = read_episode(data, key)
            if ep.header["substrate"] not in substrates:
                continue
            for t in times:
                if t < len(ep.frames):
                    out.append(HeldOutState(ep.header["substrate"], f"{key}@{t}", ep.frames[t],
                                            PlayerStates(ep.cells[t], ep.facing[t], ep.alive[t])))
    return out


def distances(cells: np.ndarray, shape: tuple[int, int], torus: bool) -> np.ndarray:
    """Chebyshev distance in cells between every two players [N,N] (wrapping on torus maps)."""
    d = np.abs(cells[:, None, :].astype(int) - cells[None, :, :].astype(int))
    if torus:
        d = np.minimum(d, np.array(shape) - d)
    return d.max(-1)


@torch.no_grad()
def measure_state(model, state: HeldOutState, movers: int, min_distance: int, sampling_steps: int, device,
                  rng: np.random.Generator) -> dict[str, int]:
    """Counts (COUNTS) for one state: one sampler call of 1 + movers x len(MOVES) worlds, two steps."""
    game = get_game(state.substrate)
    players = state.players
    n = len(players.cells)
    rows, cols = state.frame.shape[0] // CELL, state.frame.shape[1] // CELL
    dist = distances(players.cells, (rows, cols), bool(game.view.get("torus", False)))
    alive = players.alive.astype(bool)
    live_pair = alive[:, None] & alive[None, :] & ~np.eye(n, dtype=bool)
    candidates = np.flatnonzero(alive & (live_pair & (dist > min_distance)).any(1))
    counts = dict.fromkeys(COUNTS, 0)
    if len(candidates) == 0:
        return counts
    chosen = rng.choice(candidates, size=min(movers, len(candidates)), replace=False)
    noop = game.action_names.index("NOOP")
    moves = [game.action_names.index(m) for m in MOVES]
    plan = [(p, a) for p in chosen for a in moves]
    b = 1 + len(plan)
    actions = torch.full((b, n), noop, dtype=torch.long)
    for w, (p, a) in enumerate(plan, start=1):
        actions[w, p] = a
    # argmax decoding: the worlds differ only in one player's action, so nothing drawn at random (each
    # world draws its own) may tell them apart.
    sim = DreamSimulator(model, state.substrate, n, b, device, sampling_steps=sampling_steps, decoding="argmax")
    start = PlayerStates(players.cells, players.facing, alive)
    sim.reset(np.repeat(state.frame[None], b, axis=0), PlayerStates.stack([start] * b))
    first = sim.step(actions)
    pose1 = torch.cat([first.cells, first.facing[..., None]], -1).cpu().numpy()  # [B,N,3]
    second = sim.step(torch.full((b, n), noop, dtype=torch.long))
    pose2 = torch.cat([second.cells, second.facing[..., None]], -1).cpu().numpy()
    same1 = (pose1 == pose1[:1]).all(-1)  # [B,N]: unchanged against the reference world
    same2 = (pose2 == pose2[:1]).all(-1)
    for w, (p, a) in enumerate(plan, start=1):
        kind = "turn" if game.action_names[a].startswith("TURN") else "step"
        counts[kind] += 1
        counts[f"{kind}_changed"] += int(not same1[w, p])
        for i in np.flatnonzero(live_pair[p]):
            group = "far" if dist[p, i] > min_distance else "near"
            counts[group] += 1
            counts[f"{group}_same1"] += int(same1[w, i])
            counts[f"{group}_same2"] += int(same2[w, i])
    return counts


def shares(c: dict[str, int]) -> dict[str, float | None]:
    def ratio(num: str, den: str) -> float | None:
        return round(c[num] / c[den], 4) if c[den] else None

    return {"binding@1": ratio("far_same1", "far"), "binding@2": ratio("far_same2", "far"),
            "control_turn": ratio("turn_changed", "turn"), "control_step": ratio("step_changed", "step"),
            "near@1": ratio("near_same1", "near"), "near@2": ratio("near_same2", "near")}


def _markdown(doc: dict) -> str:
    cols = ("binding@1", "binding@2", "control_turn", "control_step", "near@1", "near@2")
    lines = ["# Binding, not leakage (benchmarks/binding.py)", "",
             f"Command: `{doc['command']}`  ",
             f"Machine: {doc['machine']['cpu']}, {doc['machine']['cores']} cores, torch {doc['torch']}, "
             f"device {doc['device']}; commit {doc['commit']}; {doc['date']}; {doc['seconds']:.0f} s.  ",
             f"Checkpoint: {doc['checkpoint']}; states: {doc['states']} ({doc['state_sources']}); "
             f"far = Chebyshev distance > {doc['min_distance']} cells; sampling steps {doc['sampling_steps']}.", "",
             "binding@h: share of (state, far live pair i, p, movement action of p) where i's predicted cell and facing "
             "after h steps equal those of the all-NOOP reference world (h=1: the step the action is taken; h=2: after "
             "p's move entered the generated frame). control: share of movers whose own prediction changes "
             "(turns, steps). near@h: the same as binding@h for pairs within the distance.", "",
             "| substrate | states | far cases | " + " | ".join(cols) + " |",
             "|---|---|---|" + "---|" * len(cols)]
    for name, row in [("overall", doc["overall"])] + sorted(doc["substrates"].items()):
        vals = " | ".join("" if row["shares"][k] is None else f"{row['shares'][k]:.4f}" for k in cols)
        lines.append(f"| {name} | {row['states']} | {row['counts']['far']} | {vals} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    p.add_argument("--data", help="an LMDB dataset with held-out episodes (training.record --split test)")
    p.add_argument("--split", default="test")
    p.add_argument("--times", type=int, nargs="*", default=[20, 40], help="steps of each episode to start from")
    p.add_argument("--starts", type=int, default=2, help="bundled start states per substrate")
    p.add_argument("--substrates", default="all", help="comma-separated, or all")
    p.add_argument("--movers", type=int, default=4, help="players varied per state")
    p.add_argument("--min-distance", type=int, default=5)
    p.add_argument("--sampling-steps", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="result path without extension (default benchmarks/results/binding_<device>)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    model = load_world_model(args.checkpoint, device)
    substrates = model.games if args.substrates == "all" else args.substrates.split(",")
    unknown = sorted(set(substrates) - set(model.games))
    if unknown:
        raise ValueError(f"the checkpoint does not know {unknown}")
    states = held_out_states(Path(args.checkpoint), args.starts, args.data, args.split, args.times, substrates)
    rng = np.random.default_rng(args.seed)
    per: dict[str, dict] = {}
    start = time.time()
    for state in tqdm(states, desc="binding", unit="state"):
        c = measure_state(model, state, args.movers, args.min_distance, args.sampling_steps, device, rng)
        row = per.setdefault(state.substrate, {"states": 0, "counts": dict.fromkeys(COUNTS, 0)})
        row["states"] += 1
        for k, v in c.items():
            row["counts"][k] += v
    total = {"states": len(states), "counts": {k: sum(r["counts"][k] for r in per.values()) for k in COUNTS}}
    for row in [*per.values(), total]:
        row["shares"] = shares(row["counts"])
    episodes = len({s.source.split("@")[0] for s in states if not s.source.startswith("start/")})
    sources = f"up to {args.starts} bundled start states per substrate" + (
        f"; steps {args.times} of {episodes} recorded {args.split} episodes in {args.data}" if args.data else "")
    doc = {"command": "python -m benchmarks.binding " + " ".join(sys.argv[1:] if argv is None else argv),
           "machine": machine(), "torch": torch.__version__, "device": str(device), "commit": git_commit(),
           "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "seconds": time.time() - start,
           "checkpoint": "bundled default" if Path(args.checkpoint) == DEFAULT_CHECKPOINT else args.checkpoint,
           "states": len(states), "state_sources": sources,
           "min_distance": args.min_distance, "sampling_steps": args.sampling_steps, "moves": MOVES,
           "overall": total, "substrates": per}
    out = Path(args.out) if args.out else RESULTS / f"binding_{device.type}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=1))
    out.with_suffix(".md").write_text(_markdown(doc))
    print(_markdown(doc))


if __name__ == "__main__":
    main()
