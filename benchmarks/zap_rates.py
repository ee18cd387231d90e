"""Zaps under a policy that acts on its own world: removals, returns and beams, real game vs dream.

    python -m benchmarks.zap_rates [--substrates commons_harvest__open clean_up] [--worlds 4] [--steps 100] \\
        [--zap-share 0.3] [--device auto] [--checkpoint DIR] [--out-dir benchmarks/results --tag TAG]

`benchmark dynamics` feeds the dream the real episode's recorded actions; once the dream's players
drift from the real ones (a respawn at another spawn point is enough), a recorded zap aims where a
real player stood, so removals there undercount what the dream does for a policy acting on the
dream's own state, which is what an RL user runs. Here both worlds get the same policy, not the same
actions: uniform random actions with FIRE_ZAP taken at `--zap-share` (so zaps are frequent), from
real starts (`--worlds` real builds, seeds 0..K-1; the dream starts from the same builds' first
frames, `start="real"`), for `--steps` steps. Counted per 100 steps (all players): zaps fired
(`zaps.zap_step` on each world's own states), players removed, players returned, and cells showing
the beam. Writes zap_rates_<tag>.json and .md (machine, command, commit).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from actionparty_env.games import get_game
from actionparty_env.zaps import BEAM_COLOUR, FIRE_ZAP, ZAPPERS, ZapState, after_hits, zap_step
from benchmarks.provenance import git_commit, machine, save_results

COUNTS = ("fired", "removed", "returned", "beam cells")


def random_zapping(game, worlds: int, share: float, rng: np.random.Generator) -> np.ndarray:
    """Actions [worlds, N]: uniform, FIRE_ZAP instead with probability `share`."""
    actions = rng.integers(0, game.num_actions, (worlds, game.num_players))
    actions[rng.random(actions.shape) < share] = game.action_names.index(FIRE_ZAP)
    return actions


def beam_cells(frame: np.ndarray) -> int:
    """Cells of a frame [H, W, 3] drawn all in the zap beam's colour."""
    h, w = frame.shape[0] // 8, frame.shape[1] // 8
    patches = frame.reshape(h, 8, w, 8, 3).transpose(0, 2, 1, 3, 4).reshape(h, w, 64, 3)
    return int((patches == np.asarray(BEAM_COLOUR, np.uint8)).all((2, 3)).sum())


def count(tally: dict, zaps: torch.Tensor, state: ZapState, substrate: str, alive: np.ndarray,
          alive_next: np.ndarray, frames) -> ZapState:
    """Add one step of every world to `tally`; returns the zaps' clock after it."""
    fires, _, state = zap_step(ZAPPERS[substrate], state, torch.from_numpy(alive), zaps)
    tally["fired"] += int(fires.sum())
    tally["removed"] += int((alive & ~alive_next).sum())
    tally["returned"] += int((~alive & alive_next).sum())
    tally["beam cells"] += sum(beam_cells(f) for f in frames)
    return after_hits(state, torch.from_numpy(alive_next))


def real_rates(substrate: str, worlds: int, steps: int, share: float, seed: int) -> dict:
    from actionparty_env.real import MeltingPotEngine

    game, rng = get_game(substrate), np.random.default_rng(seed)
    engines = [MeltingPotEngine() for _ in range(worlds)]
    now = [e.build(substrate, seed=w) for w, e in enumerate(engines)]
    tally, state = dict.fromkeys(COUNTS, 0), ZapState.fresh((worlds, game.num_players), "cpu")
    for _ in tqdm(range(steps), desc=f"{substrate} real", file=sys.stdout, mininterval=5):
        actions = random_zapping(game, worlds, share, rng)
        alive = np.stack([s.players.alive for s in now])
        now = [e.step(a) for e, a in zip(engines, actions)]
        state = count(tally, torch.from_numpy(actions == game.action_names.index(FIRE_ZAP)), state, substrate,
                      alive, np.stack([s.players.alive for s in now]), [s.frame for s in now])
    return tally


def dream_rates(substrate: str, worlds: int, steps: int, share: float, seed: int, device: str,
                checkpoint: str | None) -> dict:
    from actionparty_env.env import DreamWorlds

    game, rng = get_game(substrate), np.random.default_rng(seed)
    dream = DreamWorlds(substrate, num_worlds=worlds, device=device, checkpoint=checkpoint, start="real")
    dream.reset(list(range(worlds)))
    sim = dream.sim
    tally, state = dict.fromkeys(COUNTS, 0), ZapState.fresh((worlds, game.num_players), "cpu")
    for _ in tqdm(range(steps), desc=f"{substrate} dream", file=sys.stdout, mininterval=5):
        actions = random_zapping(game, worlds, share, rng)
        alive = sim.players.alive.cpu().numpy()
        result = sim.step(torch.as_tensor(actions, device=sim.device))
        state = count(tally, torch.from_numpy(actions == game.action_names.index(FIRE_ZAP)), state, substrate,
                      alive, result.players.alive.cpu().numpy(), list(result.frames.cpu().numpy()))
    return tally


def to_markdown(result: dict) -> str:
    m = result["meta"]
    lines = [f"# Zaps under a policy acting on its own world, real game vs dream ({m['device']})", "",
             f"Command: `{m['command']}`; commit {m['commit']}; {m['machine']['cpu']}, {m['machine']['cores']} cores, "
             f"{m['machine']['date']}. {m['worlds']} worlds x {m['steps']} steps per substrate, uniform random actions "
             f"with FIRE_ZAP at {m['zap_share']}, from real starts (builds 0..{m['worlds'] - 1}); counts per 100 steps, "
             "all players (benchmarks/zap_rates.py).", "",
             "| substrate | run | " + " | ".join(f"{c} / 100 steps" for c in COUNTS) + " |", "|---|---|" + "---|" * len(COUNTS)]
    for substrate, runs in result["substrates"].items():
        per = 100 / (m["worlds"] * m["steps"])
        for run in ("real", "dream"):
            cells = []
            for c in COUNTS:
                v = runs[run][c] * per
                real = runs["real"][c] * per
                cells.append(f"{v:.1f}" + (f" ({v / real:.2f})" if run == "dream" and real else ""))
            lines.append(f"| {substrate} | {run} | " + " | ".join(cells) + " |")
    lines += ["", "In brackets: dream / real. Fired zaps follow each world's own players (who is alive, the cooldown), "
              "so they differ where removals do."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.zap_rates", description=__doc__.split("\n\n")[0])
    p.add_argument("--substrates", nargs="*", default=["commons_harvest__open", "clean_up"])
    p.add_argument("--worlds", type=int, default=4)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--zap-share", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--out-dir", default="benchmarks/results")
    p.add_argument("--tag", default=None)
    args = p.parse_args(argv)
    unknown = [s for s in args.substrates if s not in ZAPPERS]
    if unknown:
        p.error(f"no zap rule for {', '.join(unknown)}; these have one: {', '.join(sorted(ZAPPERS))}")
    if args.worlds < 1 or args.steps < 1 or not 0 <= args.zap_share <= 1:
        p.error("--worlds and --steps must be >= 1 and --zap-share in [0, 1]")
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    result = {"substrates": {}, "meta": {
        "command": "python -m benchmarks.zap_rates " + " ".join(sys.argv[1:] if argv is None else argv),
        "commit": git_commit(), "machine": machine(), "device": torch.cuda.get_device_name() if device.startswith("cuda")
        else "cpu", "worlds": args.worlds, "steps": args.steps, "zap_share": args.zap_share}}
    for substrate in args.substrates:
        result["substrates"][substrate] = {
            "real": real_rates(substrate, args.worlds, args.steps, args.zap_share, args.seed),
            "dream": dream_rates(substrate, args.worlds, args.steps, args.zap_share, args.seed, device, args.checkpoint)}
    save_results(Path(args.out_dir) / f"zap_rates_{args.tag or device.split(':')[0]}", result, to_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
