"""The `actionparty` command.

    actionparty catalog [GAME] [--json]          list the games (or one game's details)
    actionparty real GAME --steps 100 --gif out/real.gif   run the real Melting Pot with random actions
    actionparty play GAME --steps 100 --gif out/dream.gif  the same in the dream (the world model)

Each subcommand is a `main(argv) -> int | None` function in some module, named in COMMANDS and
imported only when that subcommand runs (so `actionparty catalog` never imports torch or Melting Pot).
A module adds its subcommand with one line in COMMANDS; a name may have two words ("dataset check").
The development commands live in the `training` and `benchmarks` packages of a source checkout; they
are listed only where their package imports, so an install of the runtime alone gets a clean CLI.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
import time
from pathlib import Path

# name -> (module, function, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "catalog": ("actionparty_env.cli", "catalog_main", "list the games in the catalog, or one game's details"),
    "real": ("actionparty_env.cli", "real_main", "run the real Melting Pot with random actions, write a GIF"),
    "play": ("actionparty_env.cli", "play_main", "run the dream with random actions (GIF), or play it: --interactive"),
    "replay": ("actionparty_env.play", "replay_main", "replay a recording of `play --record` in the dream or the real game"),
    "record": ("training.record", "main", "record real Melting Pot episodes into an LMDB dataset"),
    "dataset check": ("training.check", "main", "validate a dataset: counts, histograms, bad records"),
    "dataset split": ("training.heldout", "main", "record a dataset's held-out val/test episodes"),
    "train": ("training.train", "main", "train the world model (torchrun for several processes or GPUs)"),
    "evaluate": ("benchmarks.closed_loop", "main", "closed-loop state metrics of a checkpoint on held-out episodes"),
    "benchmark fidelity": ("benchmarks.fidelity", "main", "score the dream against held-out real episodes, from pixels"),
    "benchmark dynamics": ("benchmarks.dynamics", "main", "rewards, deaths, respawns, world changes, episode ends: real vs dream"),
    "benchmark speed": ("benchmarks.speed", "main", "dream env-steps/s, single world and batched, beside the real env"),
    "benchmark rl": ("benchmarks.rl", "main", "PPO trained in the dream and in the real game, both scored in the real game"),
}


def _package_present(module: str) -> bool:
    """Whether the top-level package of `module` can be imported (found, not imported)."""
    try:
        return importlib.util.find_spec(module.split(".")[0]) is not None
    except (ImportError, ValueError):
        return False


def available_commands() -> dict[str, tuple[str, str, str]]:
    """COMMANDS whose package is installed: without `training` or `benchmarks` (the runtime alone), their
    commands are not offered."""
    return {name: entry for name, entry in COMMANDS.items() if _package_present(entry[0])}


def _usage(commands: dict[str, tuple[str, str, str]], prog: str = "actionparty") -> str:
    width = max(len(n) for n in commands)
    lines = [f"  {n:<{width}}  {h}" for n, (_, _, h) in sorted(commands.items())]
    return f"usage: {prog} COMMAND [ARGS]   ({prog} COMMAND --help for its options)\n\ncommands:\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = available_commands()
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage(commands))
        return 0
    for words in (2, 1):  # longest name first: "dataset check" before "dataset"
        name = " ".join(argv[:words])
        if len(argv) >= words and name in commands:
            module, function, _ = commands[name]
            prog, sys.argv[0] = sys.argv[0], f"actionparty {name}"  # argparse's default prog: its usage line
            try:
                result = getattr(importlib.import_module(module), function)(argv[words:])
            except ValueError as e:  # bad input, a bad checkpoint (CheckpointError): one line, no traceback
                print(f"actionparty: error: {' '.join(str(e).split())}", file=sys.stderr)
                return 2
            finally:
                sys.argv[0] = prog
            return int(result or 0)
    group = {n.split(" ", 1)[1]: e for n, e in commands.items() if n.startswith(f"{argv[0]} ")}  # "dataset"
    if group:
        usage = _usage(group, prog=f"actionparty {argv[0]}")
        if len(argv) == 1 or argv[1] in ("-h", "--help"):
            print(usage)
            return 0
        print(f"actionparty: unknown command {' '.join(argv[:2])!r}\n\n{usage}", file=sys.stderr)
        return 2
    if any(" ".join(argv[:w]) in COMMANDS for w in (2, 1)):
        print(f"actionparty: {argv[0]!r} is a development command: it needs a source checkout with the "
              f"training and benchmarks packages\n\n{_usage(commands)}", file=sys.stderr)
        return 2
    print(f"actionparty: unknown command {argv[0]!r}\n\n{_usage(commands)}", file=sys.stderr)
    return 2


def catalog_main(argv: list[str]) -> int:
    from actionparty_env.games import get_game, load_catalog

    p = argparse.ArgumentParser(prog="actionparty catalog", description="The games in the shipped catalog "
                                "(regenerate it from Melting Pot with `python -m training.catalog`).")
    p.add_argument("game", nargs="?", help="show this game's details")
    p.add_argument("--json", action="store_true", help="print JSON")
    args = p.parse_args(argv)
    if args.game:
        try:
            game = get_game(args.game)
        except ValueError as e:
            p.error(str(e))
        d = game.to_dict()
        if args.json:
            print(json.dumps(d, indent=1))
        else:
            for k, v in d.items():
                print(f"{k:17s} {v}")
        return 0
    games = load_catalog()
    if args.json:
        print(json.dumps([g.to_dict() for g in games.values()], indent=1))
        return 0
    print(f"{'game':60s} {'players':>7s} {'actions':>7s} {'map':>7s} {'view':>4s}  identity")
    for g in games.values():
        print(f"{g.name:60s} {g.num_players:7d} {g.num_actions:7d} {f'{g.map_rows}x{g.map_cols}':>7s} "
              f"{g.view_px:4d}  {'visible' if g.identity_visible else 'hidden'}")
    print(f"{len(games)} games")
    return 0


def output_file(path: str, suffixes: tuple[str, ...] = (".gif",)) -> Path:
    """An output path checked before any work (argparse `type=`): the right suffix, a folder that can be
    made and written to. A problem is an argparse.ArgumentTypeError, so the usage error names the option."""
    import tempfile

    out = Path(path).expanduser()
    if suffixes and out.suffix.lower() not in suffixes:
        raise argparse.ArgumentTypeError(f"{path}: the file name must end in {' or '.join(suffixes)}")
    if out.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: is a folder; give a file name")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out.parent):  # can a file be written there (not just permissions)?
            pass
    except OSError as e:
        raise argparse.ArgumentTypeError(f"{path}: cannot write to {out.parent} ({e.strerror or e})") from None
    return out


def _rollout_parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("game", help="substrate name, e.g. coins (see `actionparty catalog`)")
    p.add_argument("--steps", type=int, default=100, help="steps to run (the episode is truncated there)")
    p.add_argument("--seed", type=int, default=0, help="the reset seed, also seeds the random actions")
    p.add_argument("--num-players", type=int, default=None,
                   help="players (default: the substrate's; `actionparty catalog GAME` lists the counts it takes)")
    p.add_argument("--gif", default=None, type=output_file,
                   help="write the global frame (and the players' views) as a GIF here (checked before the run)")
    p.add_argument("--views", action="store_true", help="put the players' views beside the frame in the GIF")
    p.add_argument("--scale", type=int, default=2, help="GIF upscale factor")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return p


def real_main(argv: list[str]) -> int:
    from actionparty_env.real import RealParallelEnv

    p = _rollout_parser("actionparty real", "Run a real Melting Pot substrate with uniformly random actions.")
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error("--steps must be >= 1")
    env = RealParallelEnv(args.game, num_players=args.num_players, max_cycles=args.steps)  # ValueError: main's one line
    return _random_rollout(env, args)


def play_main(argv: list[str]) -> int:
    from actionparty_env.env import parallel_env

    p = _rollout_parser("actionparty play", "Run the dream of a substrate (the world model, closed loop from a "
                        "real start state) with uniformly random actions.")
    p.add_argument("--checkpoint", default=None,
                   help="checkpoint folder, or a bundled one by name: default (the default) or small (for the CPU)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--sampling-steps", type=int, default=None,
                   help="unmasking passes per frame (default: the sampler's, 1)")
    p.add_argument("--temperature", type=float, default=None,
                   help="0 draws the most likely frame; > 0 samples (default: the sampler's, 0)")
    p.add_argument("--start", choices=("bundled", "real"), default="bundled",
                   help="start from the checkpoint's start states or a fresh real reset (needs Melting Pot)")
    from actionparty_env import play  # --interactive, --side-by-side, --record, --keys: a person plays

    play.add_play_arguments(p, output_file)
    args = p.parse_args(argv)
    if play.wants_play(args, p):
        return play.play(args, p)
    if args.steps < 1:
        p.error("--steps must be >= 1")
    # A ValueError (a bad argument, device or checkpoint: everything is checked here) is main's one line.
    env = parallel_env(args.game, checkpoint=args.checkpoint, num_players=args.num_players, device=args.device,
                       sampling_steps=args.sampling_steps, temperature=args.temperature, max_cycles=args.steps,
                       start=args.start)
    print(f"dream of {args.game} on {env.dream.device} from {env.dream.folder}")
    if env.dream.device.type == "cpu" and args.checkpoint is None:
        print("(on a CPU, --checkpoint small dreams about 9x faster: README, \"The dream as a PettingZoo env\")")
    return _random_rollout(env, args)


def _random_rollout(env, args) -> int:
    """Step a RealParallelEnv or DreamParallelEnv with random actions; print what happened, write a GIF."""
    import numpy as np

    from actionparty_env.grid import CELL
    from actionparty_env.render import beside, save_gif, tile

    rng = np.random.default_rng(args.seed)

    def picture() -> np.ndarray:
        frame = env.state()
        return beside(frame, tile(list(obs.values()))) if args.views else frame

    from tqdm import tqdm

    start = time.perf_counter()
    obs, infos = env.reset(seed=args.seed)
    frames = [picture()] if args.gif else []
    totals = dict.fromkeys(env.possible_agents, 0.0)
    dead_steps = dict.fromkeys(env.possible_agents, 0)
    steps, ended = 0, "max steps"
    bar = tqdm(total=env.max_cycles, desc=f"{args.game} ({env.metadata['name']})", unit="step", file=sys.stderr,
               disable=getattr(args, "no_progress", False), leave=False, dynamic_ncols=True)
    while env.agents:
        actions = {a: int(rng.integers(env.action_space(a).n)) for a in env.agents}
        obs, rewards, terms, truncs, infos = env.step(actions)
        steps += 1
        bar.update()
        for a in rewards:
            totals[a] += rewards[a]
            dead_steps[a] += not infos[a]["alive"]
        if args.gif:
            frames.append(picture())
        if any(terms.values()):
            ended = "Melting Pot ended the episode"
    bar.close()
    elapsed = time.perf_counter() - start
    print(f"{args.game}: {steps} steps with {len(env.possible_agents)} players, random actions, seed {args.seed} "
          f"({ended}); {elapsed:.2f} s including reset and {'GIF frames' if args.gif else 'no frames'}")
    print(f"map {env.state().shape[0] // CELL}x{env.state().shape[1] // CELL} cells, actions: {', '.join(env.game.action_names)}")
    print(f"{'agent':10s} {'return':>8s} {'dead steps':>10s}  final cell, facing, alive")
    for a in env.possible_agents:
        i = infos[a]
        print(f"{a:10s} {totals[a]:8.2f} {dead_steps[a]:10d}  {i['cell']}, {'NESW'[i['facing']]}, {i['alive']}")
    if args.gif:
        path = save_gif(frames, args.gif, fps=env.metadata["render_fps"], scale=args.scale)
        print(f"wrote {len(frames)} frames to {path}")
    env.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
