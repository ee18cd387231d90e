"""The frame rate `actionparty play --interactive` reaches: steps/s of the play loop (actionparty_env/play.py)
with a bundled checkpoint (`--checkpoint small`: the small CPU model), the dream alone and side by side
with the real Melting Pot.

    python -m benchmarks.play_speed --device cpu --substrates coins clean_up --steps 20 [--checkpoint small]

Runs the pygame loop itself, headless (SDL_VIDEODRIVER=dummy), driven by a scripted random key
sequence with no frame-rate limit (`fps=0`), so `loop steps/s` is the most the loop can do on this
machine; the default 8 steps/s is reached where it is above 8. Split into the model's step (the dream
env), the real env's step (side by side), and drawing the picture (frames, views and status text,
blitted to the window). A few warm-up steps come first and are not timed. Writes
benchmarks/results/play_<tag>.json and .md (tag: the device) with the machine, command and commit.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _timed(fn, sink: list[float]):
    """`fn` with its wall time appended to `sink` on every call (torch synchronised on the GPU)."""
    @functools.wraps(fn)
    def wrapper(*a, **kw):
        t = time.perf_counter()
        out = fn(*a, **kw)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        sink.append(time.perf_counter() - t)
        return out
    return wrapper


def measure(substrate: str, side_by_side: bool, steps: int, warmup: int, device: str, seed: int = 0,
            fps: float = 0.0, baseline: bool = False, checkpoint: str | None = None) -> dict:
    """One run of the loop; `baseline` puts the copy-last-frame simulator in the model's place (the loop's
    own cost), `fps` > 0 runs at that fixed rate instead of as fast as it goes."""
    from actionparty_env import play
    from actionparty_env.env import parallel_env
    from actionparty_env.games import get_game
    from actionparty_env.simulator import CopyLastFrameSimulator

    game = get_game(substrate)
    real = None
    if side_by_side:
        from actionparty_env.real import RealParallelEnv

        real = RealParallelEnv(substrate)
    sim = {"simulator": functools.partial(CopyLastFrameSimulator, game)} if baseline else {}
    make = functools.partial(parallel_env, substrate, checkpoint=checkpoint, device=device,
                             start="real" if side_by_side else "bundled", **sim)
    t = time.perf_counter()
    session = play.PlaySession(make, real, seed=seed)
    load_s = time.perf_counter() - t
    rng = np.random.default_rng(seed)
    keys = sorted(set(session.keys.actions) - {"shift+" + d for d in play.DIGITS})
    script = [[str(k)] for k in rng.choice(keys, size=warmup + steps)]
    play.run_window(session, fps=0, script=script[:warmup])  # warm-up: allocations, caches

    dream_s, real_s, picture_s = [], [], []
    session.dream.step = _timed(session.dream.step, dream_s)
    if real is not None:
        real.step = _timed(real.step, real_s)
    original_picture = play.picture
    play.picture = _timed(original_picture, picture_s)
    try:
        result = play.run_window(session, fps=fps, script=script[warmup:])
    finally:
        play.picture = original_picture
        session.close()
    return {"substrate": substrate, "players": len(session.agents), "map": "x".join(map(str, (
        np.array(session.dream_frame.shape[:2]) // 8).tolist())),
        "mode": ("copy-last (no model)" if baseline else "dream") + (" beside the real game" if side_by_side else "")
        + (f", --fps {fps:g}" if fps else ""),
        "steps": result["steps"], "seconds": round(result["seconds"], 3),
        "loop_steps_per_s": round(result["steps"] / result["seconds"], 3),
        "model_ms": round(1000 * float(np.mean(dream_s)), 1), "real_ms": round(1000 * float(np.mean(real_s)), 2) if real_s else None,
        "picture_ms": round(1000 * float(np.mean(picture_s)), 1), "load_s": round(load_s, 2),
        "keeps_up_with_8": result["steps"] / result["seconds"] >= 0.97 * 8.0, "num_actions": game.num_actions,
        "load_1min": round(os.getloadavg()[0], 2)}


def write(results: list[dict], info: dict, command: str, out_dir: Path, tag: str, note: str = "",
          model: str = "the bundled checkpoint (actionparty_env/checkpoints/default)") -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    js = out_dir / f"play_{tag}.json"
    js.write_text(json.dumps({"machine": info, "command": command, "note": note, "rows": results}, indent=1))
    lines = [f"# Play loop speed ({tag})", "",
             f"Command: `{command}`  ",
             f"Machine: {info['cpu']}; {info['cores']} CPU cores, torch {torch.__version__}, device {info['device']}; "
             f"commit {info['git_commit']}, {info['date']}; 1-minute load average {info['load_average_1min']} at "
             "the end (other jobs share the machine).  ",
             f"Model: {model}.", "",
             "`loop steps/s` = steps of `actionparty play --interactive`'s pygame loop (headless, SDL dummy driver, "
             "a scripted random key sequence, no frame-rate limit), each step = the model's step of every player, "
             "the real env's step side by side, and drawing the window's picture. The default frame rate is 8 "
             "steps/s; where the loop is slower the window says the model cannot keep up. The `copy-last (no model) beside "
             "the real game, --fps 8` row is the same loop at the default fixed rate around the copy-last-frame baseline: the loop "
             "itself holds 8 steps/s, so the model is what falls short.", "",
             "| substrate | players | map | mode | torch threads | loop steps/s | model ms/step | real ms/step | picture ms | keeps up with 8/s | load (1 min) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        real_ms = "" if r["real_ms"] is None else f"{r['real_ms']:.1f}"
        lines.append(f"| {r['substrate']} | {r['players']} | {r['map']} | {r['mode']} | {r['threads']} | {r['loop_steps_per_s']:.2f} | "
                     f"{r['model_ms']:.0f} | {real_ms} | {r['picture_ms']:.0f} | {'yes' if r['keeps_up_with_8'] else 'no'} | {r['load_1min']} |")
    if note:
        lines += ["", note]
    md = out_dir / f"play_{tag}.md"
    md.write_text("\n".join(lines) + "\n")
    return js, md


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--substrates", nargs="*", default=["coins", "clean_up"])
    p.add_argument("--steps", type=int, default=20, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--no-side-by-side", action="store_true", help="only the dream alone")
    p.add_argument("--no-baseline", action="store_true",
                   help="skip the run of the loop at --fps 8 around the copy-last-frame baseline (no model)")
    p.add_argument("--threads", type=int, nargs="*", default=None,
                   help="torch CPU thread counts to measure, one run each (default: torch's choice)")
    p.add_argument("--out-dir", default=str(RESULTS))
    p.add_argument("--tag", default=None, help="results file suffix: play_<tag>.json/.md (default: the device)")
    p.add_argument("--checkpoint", default=None, help="a checkpoint folder or bundled name (default: 'default')")
    p.add_argument("--note", default="", help="a paragraph written under the table (e.g. what else ran on the machine)")
    args = p.parse_args(argv)
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    from actionparty_env.env import resolve_device
    from benchmarks.provenance import machine

    device = resolve_device(args.device)
    results = []
    for threads in args.threads or [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        for substrate in args.substrates:
            for side in ((False,) if args.no_side_by_side else (False, True)):
                r = {**measure(substrate, side, args.steps, args.warmup, str(device), checkpoint=args.checkpoint),
                     "threads": threads}
                print(json.dumps(r), flush=True)
                results.append(r)
        if not args.no_baseline:  # the loop itself at the default 8 steps/s, without the model
            r = {**measure(args.substrates[0], True, args.steps, args.warmup, str(device), fps=8.0, baseline=True),
                 "threads": threads}
            print(json.dumps(r), flush=True)
            results.append(r)
    info = {**machine(), "device": str(device)}
    command = "python -m benchmarks.play_speed " + " ".join(sys.argv[1:] if argv is None else argv)
    from actionparty_env.model.checkpoint import resolve_checkpoint

    folder = resolve_checkpoint(args.checkpoint).resolve()
    model = f"the checkpoint {folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder}"
    js, md = write(results, info, command, Path(args.out_dir), args.tag or device.type, args.note, model)
    print(f"wrote {js} and {md}")


if __name__ == "__main__":
    main()
