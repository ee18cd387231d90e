"""Real Melting Pot steps/s per substrate: the lean observation set next to Melting Pot's default.

    python -m benchmarks.real_speed                      # all 49 substrates, 300 steps each
    python -m benchmarks.real_speed --games coins clean_up --steps 500

Three ways of stepping the same engine with uniformly random actions (resets are not timed; an
episode that ends is reset and the run goes on):
- env:      what RealParallelEnv reads per step: each player's RGB view, POSITION, ORIENTATION, REWARD;
- recorder: the same plus the global frame (WORLD.RGB), as a dataset recorder needs;
- default:  every observation the Lua world exposes, every step, as Melting Pot's own dm_env stack
            (dmlab2d.Environment) reads them, plus the global frame.
Each substrate runs in its own process (a Lua error can abort a process) on one core.
Writes benchmarks/results/real_speed_<tag>.json and .md with the machine, command and git commit.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.provenance import machine

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MODES = {"env": (False, False), "recorder": (False, True), "default": (True, True)}  # (default_obs, frame)


def measure(name: str, steps: int, seed: int = 0) -> dict[str, Any]:
    """Steps/s of one substrate in each mode, and the reset time."""
    import numpy as np

    from actionparty_env.real import MeltingPotEngine

    out: dict[str, Any] = {"name": name}
    for mode, (default_obs, frame) in MODES.items():
        engine = MeltingPotEngine(default_observations=default_obs)
        start = time.perf_counter()
        engine.build(name, seed=seed)
        out["reset_s"] = min(out.get("reset_s", float("inf")), time.perf_counter() - start)
        rng = np.random.default_rng(seed)
        actions = rng.integers(0, engine.num_actions, (steps, engine.num_players))
        elapsed = 0.0
        for a in actions:
            start = time.perf_counter()
            result = engine.step(a, frame=frame)
            elapsed += time.perf_counter() - start
            if result.done:
                engine.reset(seed + 1, frame=frame)
        out[f"{mode}_steps_per_s"] = steps / elapsed
        out["num_players"] = engine.num_players
    return out


def _measure_in_subprocess(name: str, steps: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.real_speed", "--one", name, "--steps", str(steps)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = [line for line in proc.stderr.splitlines() if "rror" in line][-1:] or [proc.stderr[-300:]]
        return {"name": name, "error": f"exit {proc.returncode}: {tail[0].strip()}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _markdown(doc: dict[str, Any]) -> str:
    import numpy as np

    m = doc["machine"]
    lines = [
        "# Real Melting Pot speed (CPU)", "",
        f"Command: `{doc['command']}`  ",
        f"Machine: {m['cpu']}, {m['cores']} cores (each substrate on one process), Python {m['python']}; "
        f"commit {m['git_commit']}, {m['date']}. 1-minute load average {m['load_average_1min_before']} before, "
        f"{m['load_average_1min']} after (other work on the machine slows every column alike).", "",
        f"Env steps/s (all players act once per step) over {doc['steps']} random steps, resets not timed. "
        "env = RealParallelEnv's reads (views + cell/facing + reward); recorder = env + global frame; "
        "default = every observation dmlab2d exposes every step, as Melting Pot's own stack reads them.", "",
        "| substrate | players | env | recorder | default | env / default | reset (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in doc["results"]:
        if "error" in r:
            lines.append(f"| {r['name']} | | failed: {r['error']} | | | | |")
            continue
        lines.append(f"| {r['name']} | {r['num_players']} | {r['env_steps_per_s']:.0f} | {r['recorder_steps_per_s']:.0f} "
                     f"| {r['default_steps_per_s']:.0f} | {r['env_steps_per_s'] / r['default_steps_per_s']:.2f}x "
                     f"| {r['reset_s']:.2f} |")
    ok = [r for r in doc["results"] if "error" not in r]
    if ok:
        def geo(key: str) -> float:
            return float(np.exp(np.mean([np.log(r[key]) for r in ok])))

        lines += ["", f"Geometric mean over {len(ok)} substrates: env {geo('env_steps_per_s'):.0f}, "
                      f"recorder {geo('recorder_steps_per_s'):.0f}, default {geo('default_steps_per_s'):.0f} steps/s."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--games", nargs="*", default=None, help="substrates (default: all in the catalog)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--tag", default="cpu", help="results file suffix: real_speed_<tag>.json/.md")
    p.add_argument("--one", metavar="SUBSTRATE", help=argparse.SUPPRESS)  # what each subprocess runs
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one, args.steps)))
        return
    from tqdm import tqdm

    from actionparty_env.games import get_game, load_catalog

    names = args.games or list(load_catalog())
    for n in names:
        get_game(n)  # a ValueError naming close matches for a typo, before any work
    load_before = round(os.getloadavg()[0], 2)
    results = [_measure_in_subprocess(n, args.steps) for n in tqdm(names, desc="real speed")]
    command = "python -m benchmarks.real_speed " + " ".join(argv if argv is not None else sys.argv[1:])
    host = {**machine(), "load_average_1min_before": load_before}
    doc = {"command": command.strip(), "steps": args.steps, "machine": host, "results": results}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"real_speed_{args.tag}.json").write_text(json.dumps(doc, indent=1) + "\n")
    (RESULTS / f"real_speed_{args.tag}.md").write_text(_markdown(doc))
    print(_markdown(doc))


if __name__ == "__main__":
    main()
