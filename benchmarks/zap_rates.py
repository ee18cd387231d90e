"""Zaps (and clean_up's cleaning) under a policy that acts on its own world, real game vs dream.

    python -m benchmarks.zap_rates [--substrates commons_harvest__open clean_up] [--worlds 4] [--steps 100] \\
        [--policy random] [--zap-share 0.3] [--clean-share 0.3] [--device auto] [--checkpoint DIR] \\
        [--out-dir benchmarks/results --tag TAG]

`benchmark dynamics` feeds the dream the real episode's recorded actions; once the dream's players
drift from the real ones (a respawn at another spawn point is enough), a recorded zap aims where a
real player stood, so removals there undercount what the dream does for a policy acting on the
dream's own state, which is what an RL user runs. Here both worlds get the same policy, not the same
actions, from real starts (`--worlds` real builds, seeds 0..K-1; the dream starts from the same
builds' first frames, `start="real"`), for `--steps` steps. `--policy random`: uniform random actions
with FIRE_ZAP taken at `--zap-share` (so zaps are frequent); `--policy rl_mix`: the recorder's
closed-loop behaviours (training/policies.py; world w's seeded by --seed + w), each world's on its
own frame, players and rewards (in clean_up about half of them clean the river in shifts, so apples
grow: the game's public good). Counted per 100 steps (all players): reward events (a player's
r != 0) and the return paid, zaps fired (`zaps.zap_step` on each world's own states), players
removed, players returned, and cells showing the beam. In clean_up (actionparty_env/clean_up.py) FIRE_CLEAN is also taken at `--clean-share`, and
the river is counted from the frames: containers cleaned (dirty, then clean water), dirt spawned (clean,
then dirty) and cells showing the cleaning beam. Writes zap_rates_<tag>.json and .md (machine,
command, commit).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from actionparty_env.clean_up import CLEAN_UP, FIRE_CLEAN, RIVER_CELLS, clean_up_codes, map_cells
from actionparty_env.games import GameSpec, get_game
from actionparty_env.grid import CELL, PlayerStates
from actionparty_env.model.codebook import Codebook, unique_patches
from actionparty_env.zaps import BEAM_COLOUR, FIRE_ZAP, ZAPPERS, ZapState, after_hits, zap_step
from benchmarks.provenance import git_commit, machine, save_results
from training.policies import State, rl_mix

POLICIES = ("random", "rl_mix")
COUNTS = ("reward events", "return", "fired", "removed", "returned", "beam cells")
RIVER_COUNTS = ("cleaned", "dirt spawned", "cleaning beam cells")


def random_zapping(game, worlds: int, share: float, rng: np.random.Generator, clean_share: float = 0.0) -> np.ndarray:
    """Actions [worlds, N]: uniform, FIRE_ZAP instead with probability `share`, or (in a game with
    FIRE_CLEAN) FIRE_CLEAN with probability `clean_share`."""
    actions = rng.integers(0, game.num_actions, (worlds, game.num_players))
    pick = rng.random(actions.shape)
    actions[pick < share] = game.action_names.index(FIRE_ZAP)
    if FIRE_CLEAN in game.action_names:
        actions[(pick >= share) & (pick < share + clean_share)] = game.action_names.index(FIRE_CLEAN)
    return actions


class Players:
    """Every world's actions [worlds, N] for the state it is in: `random_zapping`, or with `policy="rl_mix"`
    each world's own `rl_mix` on its frame, players and last rewards."""

    def __init__(self, policy: str, game: GameSpec, worlds: int, share: float, clean_share: float, seed: int):
        self.game, self.worlds, self.share, self.clean_share = game, worlds, share, clean_share
        self.rng = np.random.default_rng(seed)
        self.bots = [rl_mix(game.action_set, game.num_players, seed + w) for w in range(worlds)] \
            if policy == "rl_mix" else None
        self.t = 0

    def act(self, players: PlayerStates, frames: list[np.ndarray], rewards: np.ndarray) -> np.ndarray:
        """`players` [worlds, N, ...] on the CPU, `frames` each world's [H, W, 3], `rewards` [worlds, N]."""
        self.t += 1
        if self.bots is None:
            return random_zapping(self.game, self.worlds, self.share, self.rng, self.clean_share)
        rows, cols = frames[0].shape[0] // CELL, frames[0].shape[1] // CELL
        torus = bool(self.game.view.get("torus", False))
        return np.stack([bot.act(self.t - 1, State(players[w], rows, cols, torus, frames[w], rewards[w]))
                         for w, bot in enumerate(self.bots)])


def river(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """clean_up's frame [H, W, 3], cell by cell [R*C] bool: (dirty containers, clean containers, cells
    showing the cleaning beam), read from the frame's own patches (clean_up.clean_up_codes)."""
    book = Codebook.from_patch_sets([unique_patches(frame)])
    codes, index = clean_up_codes(book.patches), book.encode(frame).reshape(-1)
    containers = map_cells(RIVER_CELLS)
    return codes.dirt.numpy()[index] & containers, codes.water.numpy()[index] & containers, codes.beam.numpy()[index]


def count_river(tally: dict, before, after) -> None:
    """Add one step of every world (frames `before` and `after`) to `tally`'s river counts."""
    for b, a in zip(before, after):
        (dirt_b, clean_b, _), (dirt_a, clean_a, beam) = river(b), river(a)
        tally["cleaned"] += int((dirt_b & clean_a).sum())
        tally["dirt spawned"] += int((clean_b & dirt_a).sum())
        tally["cleaning beam cells"] += int(beam.sum())


def beam_cells(frame: np.ndarray) -> int:
    """Cells of a frame [H, W, 3] drawn all in the zap beam's colour."""
    h, w = frame.shape[0] // 8, frame.shape[1] // 8
    patches = frame.reshape(h, 8, w, 8, 3).transpose(0, 2, 1, 3, 4).reshape(h, w, 64, 3)
    return int((patches == np.asarray(BEAM_COLOUR, np.uint8)).all((2, 3)).sum())


def count(tally: dict, zaps: torch.Tensor, state: ZapState, substrate: str, alive: np.ndarray,
          alive_next: np.ndarray, before, frames, rewards: np.ndarray) -> ZapState:
    """Add one step of every world (its frames `before` and after it, `frames`, and its rewards [worlds,
    N]) to `tally`; returns the zaps' clock after it."""
    tally["reward events"] += int((rewards != 0).sum())
    tally["return"] += float(rewards.sum())
    if substrate in CLEAN_UP:
        count_river(tally, before, frames)
    fires, _, state = zap_step(ZAPPERS[substrate], state, torch.from_numpy(alive), zaps)
    tally["fired"] += int(fires.sum())
    tally["removed"] += int((alive & ~alive_next).sum())
    tally["returned"] += int((~alive & alive_next).sum())
    tally["beam cells"] += sum(beam_cells(f) for f in frames)
    return after_hits(state, torch.from_numpy(alive_next))


def counters(substrate: str) -> dict:
    return dict.fromkeys(COUNTS + (RIVER_COUNTS if substrate in CLEAN_UP else ()), 0)


def real_rates(substrate: str, worlds: int, steps: int, players: Players) -> dict:
    from actionparty_env.real import MeltingPotEngine

    game = get_game(substrate)
    engines = [MeltingPotEngine() for _ in range(worlds)]
    now = [e.build(substrate, seed=w) for w, e in enumerate(engines)]
    tally, state = counters(substrate), ZapState.fresh((worlds, game.num_players), "cpu")
    rewards = np.zeros((worlds, game.num_players), np.float32)
    for _ in tqdm(range(steps), desc=f"{substrate} real", file=sys.stdout, mininterval=5):
        alive, before = np.stack([s.players.alive for s in now]), [s.frame for s in now]
        actions = players.act(PlayerStates.stack([s.players for s in now]), before, rewards)
        now = [e.step(a) for e, a in zip(engines, actions)]
        rewards = np.stack([s.rewards for s in now]).astype(np.float32)
        state = count(tally, torch.from_numpy(actions == game.action_names.index(FIRE_ZAP)), state, substrate,
                      alive, np.stack([s.players.alive for s in now]), before, [s.frame for s in now], rewards)
    return tally


def dream_rates(substrate: str, worlds: int, steps: int, players: Players, device: str, checkpoint: str | None) -> dict:
    from actionparty_env.env import DreamWorlds

    game = get_game(substrate)
    dream = DreamWorlds(substrate, num_worlds=worlds, device=device, checkpoint=checkpoint, start="real")
    dream.reset(list(range(worlds)))
    sim = dream.sim
    tally, state = counters(substrate), ZapState.fresh((worlds, game.num_players), "cpu")
    before = list(sim.codebook.decode(sim.codes).cpu().numpy())
    rewards = np.zeros((worlds, game.num_players), np.float32)
    for _ in tqdm(range(steps), desc=f"{substrate} dream", file=sys.stdout, mininterval=5):
        alive = sim.players.alive.cpu().numpy()
        actions = players.act(sim.players.to("cpu"), before, rewards)
        result = sim.step(torch.as_tensor(actions, device=sim.device))
        frames, rewards = list(result.frames.cpu().numpy()), result.rewards.float().cpu().numpy()
        state = count(tally, torch.from_numpy(actions == game.action_names.index(FIRE_ZAP)), state, substrate,
                      alive, result.players.alive.cpu().numpy(), before, frames, rewards)
        before = frames
    return tally


def to_markdown(result: dict) -> str:
    m = result["meta"]
    lines = [f"# Zaps under a policy acting on its own world, real game vs dream ({m['device']})", "",
             f"Command: `{m['command']}`; commit {m['commit']}; {m['machine']['cpu']}, {m['machine']['cores']} cores, "
             f"{m['machine']['date']}. {m['worlds']} worlds x {m['steps']} steps per substrate, "
             + (f"uniform random actions with FIRE_ZAP at {m['zap_share']}" if m.get("policy", "random") == "random"
                else f"every player by {m['policy']} (training/policies.py) on its world's own state")
             + f", from real starts (builds 0..{m['worlds'] - 1}); counts per 100 steps, "
             "all players (benchmarks/zap_rates.py).", "",
             "| substrate | run | " + " | ".join(f"{c} / 100 steps" for c in COUNTS) + " |", "|---|---|" + "---|" * len(COUNTS)]
    lines += _rows(result, COUNTS)
    lines += ["", "In brackets: dream / real. Fired zaps follow each world's own players (who is alive, the cooldown), "
              "so they differ where removals do."]
    river_games = {k: v for k, v in result["substrates"].items() if RIVER_COUNTS[0] in v["real"]}
    if river_games:
        policy = f"FIRE_CLEAN at {m['clean_share']}" if m.get("policy", "random") == "random" else m["policy"]
        lines += ["", f"clean_up's river, {policy} (containers cleaned: dirty then clean water; "
                  "spawned: clean then dirty; cells under a player are counted in neither):", "",
                  "| substrate | run | " + " | ".join(f"{c} / 100 steps" for c in RIVER_COUNTS) + " |",
                  "|---|---|" + "---|" * len(RIVER_COUNTS)]
        lines += _rows({**result, "substrates": river_games}, RIVER_COUNTS)
    return "\n".join(lines) + "\n"


def _rows(result: dict, counts: tuple[str, ...]) -> list[str]:
    """One table row per substrate and run: each count per 100 steps, the dream's over the real's in brackets."""
    m, rows = result["meta"], []
    per = 100 / (m["worlds"] * m["steps"])
    for substrate, runs in result["substrates"].items():
        for run in ("real", "dream"):
            cells = []
            for c in counts:
                v, real = runs[run][c] * per, runs["real"][c] * per
                cells.append(f"{v:.1f}" + (f" ({v / real:.2f})" if run == "dream" and real else ""))
            rows.append(f"| {substrate} | {run} | " + " | ".join(cells) + " |")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.zap_rates", description=__doc__.split("\n\n")[0])
    p.add_argument("--substrates", nargs="*", default=["commons_harvest__open", "clean_up"])
    p.add_argument("--worlds", type=int, default=4)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--policy", default="random", choices=POLICIES,
                   help="random: uniform actions with the shares below; rl_mix: the recorder's behaviours")
    p.add_argument("--zap-share", type=float, default=0.3)
    p.add_argument("--clean-share", type=float, default=0.3, help="FIRE_CLEAN's share in clean_up")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--out-dir", default="benchmarks/results")
    p.add_argument("--tag", default=None)
    args = p.parse_args(argv)
    unknown = [s for s in args.substrates if s not in ZAPPERS]
    if unknown:
        p.error(f"no zap rule for {', '.join(unknown)}; these have one: {', '.join(sorted(ZAPPERS))}")
    if args.worlds < 1 or args.steps < 1 or not (0 <= args.zap_share and 0 <= args.clean_share
                                                  and args.zap_share + args.clean_share <= 1):
        p.error("--worlds and --steps must be >= 1, --zap-share and --clean-share >= 0 and at most 1 together")
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    result = {"substrates": {}, "meta": {
        "command": "python -m benchmarks.zap_rates " + " ".join(sys.argv[1:] if argv is None else argv),
        "commit": git_commit(), "machine": machine(), "device": torch.cuda.get_device_name() if device.startswith("cuda")
        else "cpu", "worlds": args.worlds, "steps": args.steps, "zap_share": args.zap_share,
        "clean_share": args.clean_share, "policy": args.policy}}
    for substrate in args.substrates:
        def players() -> Players:  # the same draws for both runs
            return Players(args.policy, get_game(substrate), args.worlds, args.zap_share, args.clean_share, args.seed)
        result["substrates"][substrate] = {
            "real": real_rates(substrate, args.worlds, args.steps, players()),
            "dream": dream_rates(substrate, args.worlds, args.steps, players(), device, args.checkpoint)}
    save_results(Path(args.out_dir) / f"zap_rates_{args.tag or device.split(':')[0]}", result, to_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
