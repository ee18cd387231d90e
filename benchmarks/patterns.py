"""Multi-player action patterns in the dream beside the real game: do players block and never overlap?

From one real reset per (substrate, seed), the real Melting Pot and the dream (started from that same
real state) are fed the same scripted joint actions for `--steps` steps:
- lockstep: every player takes the same action (FORWARD x3, then a turn, repeated);
- mirror: players alternate FORWARD and BACKWARD, so neighbours walk into each other;
- random: uniform random actions;
- shuttle: every player FORWARD then BACKWARD, over and over: back onto the cell it just left (where
  a dream that forgets what a player consumed there would pay it again);
- noop: nobody acts (a dream that pays for standing still is one PPO will find);
- chase: every player is the recorder's `seeker` (training/policies.py: walks to the nearest player,
  faces it, zaps it, pushes into it); block: every player is its `blocker` (walks in front of another
  player's face). These two are closed-loop: they act on the real game's state, and the dream is fed
  the actions they took there, so both runs still get the same actions, now ones where players meet.
Counted per world-step, in each run: two live players on one cell ("overlaps"), a live player whose
cell moved by more than one step without dying ("jumps"; wrapping maps excepted), and among the move
actions of live players the share that left the cell unchanged ("blocked"). The real game never
overlaps and never jumps except for teleports; the dream must not either, and should block about as
often as the game does. Rewards: the players' summed reward and the player-steps with r != 0
(reward events), which the dream should match under every pattern, not only under the behaviour of
its training data (an RL policy goes where the data did not). Results: benchmarks/results/patterns_TAG.{json,md}.

    python -m benchmarks.patterns --substrates coins,clean_up,commons_harvest__open --seeds 2 --steps 40
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from actionparty_env.games import get_game
from actionparty_env.grid import CELL, MOVES, PlayerStates
from actionparty_env.play import inject_start
from actionparty_env.simulator import StartState
from benchmarks.provenance import git_commit, machine
from training.policies import ClosedLoopPolicy, RLMixParams, State, rl_mix

CLOSED_LOOP = {"chase": "seeker", "block": "blocker"}  # pattern -> the rl_mix behaviour every player takes
PATTERNS = ("lockstep", "mirror", "random", "shuttle", "noop", *CLOSED_LOOP)


def pattern_actions(pattern: str, names: tuple[str, ...], num_players: int, steps: int, seed: int) -> np.ndarray:
    """[steps, N] action indices of an open-loop pattern."""
    fwd, back, turn = names.index("FORWARD"), names.index("BACKWARD"), names.index("TURN_RIGHT")
    if pattern == "random":
        return np.random.default_rng(seed).integers(len(names), size=(steps, num_players))
    if pattern == "shuttle":
        return np.repeat(np.where(np.arange(steps) % 2 == 0, fwd, back)[:, None], num_players, axis=1)
    if pattern == "noop":
        return np.full((steps, num_players), names.index("NOOP"))
    if pattern == "lockstep":
        one = np.array([fwd, fwd, fwd, turn])[np.arange(steps) % 4]
        return np.repeat(one[:, None], num_players, axis=1)
    players = np.arange(num_players)
    return np.where((players[None, :] + np.arange(steps)[:, None] // 3) % 2 == 0, fwd, back)


def closed_loop_policy(pattern: str, action_set, num_players: int, seed: int) -> ClosedLoopPolicy:
    """The recorder's closed-loop policy with every player taking the pattern's behaviour."""
    return rl_mix(action_set, num_players, seed, RLMixParams(weights={CLOSED_LOOP[pattern]: 1.0}))


def run(env, start_obs_infos, actions: np.ndarray | None, move_ids: set[int], torus: bool,
        policy=None, steps: int = 0) -> dict:
    """Feed `actions` to `env` (already reset), or with `actions` None let `policy` act on the env's
    state for `steps` steps, and count overlaps, jumps, blocked moves and rewards; the actions taken
    are returned under "actions"."""
    _, infos = start_obs_infos
    agents = env.possible_agents
    cells = np.array([infos[a]["cell"] for a in agents])
    alive = np.array([infos[a]["alive"] for a in agents])
    overlaps = jumps = moves = blocked = reward_events = 0
    reward = 0.0
    taken = []
    frame = env.state()
    rows, cols = frame.shape[0] // CELL, frame.shape[1] // CELL
    facing = np.array([infos[a]["facing"] for a in agents])
    for t in range(len(actions) if actions is not None else steps):
        joint = actions[t] if actions is not None else policy.act(t, State(PlayerStates(cells, facing, alive), rows,
                                                                           cols, torus, env.state()))
        taken.append(np.asarray(joint, np.int64))
        _, rewards, _, _, infos = env.step({a: int(joint[i]) for i, a in enumerate(agents)})
        facing = np.array([infos[a]["facing"] for a in agents])
        reward += float(sum(rewards.values()))
        reward_events += sum(r != 0 for r in rewards.values())
        new = np.array([infos[a]["cell"] for a in agents])
        live = np.array([infos[a]["alive"] for a in agents])
        keys = [tuple(c) for c, ok in zip(new, live) if ok]
        overlaps += len(keys) != len(set(keys))
        both = alive & live
        if not torus:
            jumps += int((np.abs(new - cells).sum(-1)[both] > 1).any())
        moving = both & np.isin(joint, list(move_ids))
        moves += int(moving.sum())
        blocked += int((moving & (new == cells).all(-1)).sum())
        cells, alive = new, live
    return {"steps": len(taken), "overlaps": overlaps, "jumps": jumps, "moves": moves, "blocked": blocked,
            "reward": reward, "reward_events": reward_events, "actions": np.array(taken)}


def main(argv: list[str] | None = None) -> int:
    import actionparty_env

    p = argparse.ArgumentParser(prog="python -m benchmarks.patterns", description=__doc__.split("\n\n")[0])
    p.add_argument("--substrates", default="coins,clean_up,commons_harvest__open")
    p.add_argument("--patterns", default=",".join(PATTERNS), help=f"a comma-separated subset of {','.join(PATTERNS)}")
    p.add_argument("--seeds", type=int, default=2, help="real resets per substrate")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the bundled one)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="benchmarks/results/patterns_cpu", help="result path without extension")
    args = p.parse_args(argv)
    patterns = [x.strip() for x in args.patterns.split(",") if x.strip()]
    unknown = sorted(set(patterns) - set(PATTERNS))
    if unknown:
        p.error(f"unknown patterns {unknown}; choose from {PATTERNS}")
    t0 = time.time()
    rows = []
    jobs = [(s, seed, pat) for s in args.substrates.split(",") for seed in range(args.seeds) for pat in patterns]
    for substrate, seed, pattern in tqdm(jobs, desc="patterns"):
        game = get_game(substrate)
        move_ids = {game.action_names.index(m) for m in MOVES}
        torus = bool(game.view.get("torus", False))
        real = actionparty_env.real_parallel_env(substrate)
        real_start = real.reset(seed=seed)
        dream = actionparty_env.parallel_env(substrate, checkpoint=args.checkpoint, device=args.device)
        inject_start(dream, StartState.from_infos(real.state(), real_start[1], real.possible_agents))
        dream_start = dream.reset(seed=seed)
        n = len(real.possible_agents)
        if pattern in CLOSED_LOOP:  # acts on the real state; the dream gets the actions it took
            policy = closed_loop_policy(pattern, game.action_set, n, seed)
            real_counts = run(real, real_start, None, move_ids, torus, policy=policy, steps=args.steps)
        else:
            real_counts = run(real, real_start, pattern_actions(pattern, game.action_names, n, args.steps, seed),
                              move_ids, torus)
        dream_counts = run(dream, dream_start, real_counts["actions"], move_ids, torus)
        for name, counts in (("real", real_counts), ("dream", dream_counts)):
            counts.pop("actions")
            rows.append({"substrate": substrate, "seed": seed, "pattern": pattern, "run": name, **counts})
    write(rows, args, time.time() - t0)
    return 0


def write(rows: list[dict], args, seconds: float) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"command": "python -m benchmarks.patterns " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None),
        "machine": machine(), "commit": git_commit(), "seconds": round(seconds, 1)}
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = [f"# Multi-player action patterns: real vs dream ({meta['machine']})", "",
             f"Command: `{meta['command']}`; commit {meta['commit']}; {meta['seconds']} s. "
             "Both runs start from the same real reset and take the same actions. overlaps / jumps: world-steps "
             "with two live players on one cell / a live player moved more than one cell; blocked: share of "
             "live players' move actions that left the cell unchanged; reward: all players' summed reward; reward events: "
             "player-steps with r != 0 (benchmarks/patterns.py).", "",
             "| substrate | pattern | run | world-steps | overlaps | jumps | blocked moves | reward | reward events |",
             "|---|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["substrate"], r["pattern"], r["run"]) for r in rows}, key=lambda k: (k[0], PATTERNS.index(k[1]), k[2]))
    for sub, pat, name in keys:
        sel = [r for r in rows if (r["substrate"], r["pattern"], r["run"]) == (sub, pat, name)]
        steps, moves = sum(r["steps"] for r in sel), sum(r["moves"] for r in sel)
        share = f"{sum(r['blocked'] for r in sel) / moves:.2f}" if moves else "-"
        lines.append(f"| {sub} | {pat} | {name} | {steps} | {sum(r['overlaps'] for r in sel)} | "
                     f"{sum(r['jumps'] for r in sel)} | {share} | {sum(r.get('reward', 0.0) for r in sel):+.1f} | "
                     f"{sum(r.get('reward_events', 0) for r in sel)} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
