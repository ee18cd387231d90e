"""Where a batched dream step's time goes: torch.profiler over B worlds stepped together, the device
time summed by kind of work (attention, matmuls, the rest) and the top kernels by name.

The speed benchmark says how fast a step is and how far from the chip's peak (benchmarks/speed.py);
this one says what the rest of the time is spent on, so that a change aims at the right part.
The step runs eagerly here (no CUDA graph), so that every kernel is attributed; a recorded graph
replays the same kernels.

    python -m benchmarks.step_profile --device cuda --substrates coins clean_up --worlds 256 --tag h200

Writes benchmarks/results/step_profile_<tag>.json and .md with the machine, command and git commit.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from benchmarks.speed import RESULTS

# Substrings of kernel (CUDA) or operator (CPU) names, lower-cased, that say what kind of work it is.
KINDS = {
    "attention": ("fmha", "attention", "flash", "sdpa", "softmax"),
    "matmul": ("gemm", "cutlass", "xmma", "nvjet", "cublas", "aten::mm", "aten::addmm", "aten::bmm", "aten::linear"),
}


def kind_of(name: str) -> str:
    """'attention', 'matmul' or 'other' for a kernel or operator name."""
    low = name.lower()
    for kind, keys in KINDS.items():
        if any(k in low for k in keys):
            return kind
    return "other"


def summarise(events: list[tuple[str, float, int]], top: int = 12) -> dict[str, Any]:
    """(name, microseconds, calls) per kernel -> the total, the share per kind and the top kernels."""
    total = sum(us for _, us, _ in events)
    if total <= 0:
        raise ValueError("the profile holds no timed kernels")
    by_kind = {k: 0.0 for k in (*KINDS, "other")}
    for name, us, _ in events:
        by_kind[kind_of(name)] += us
    ranked = sorted(events, key=lambda e: -e[1])[:top]
    return {"total_us": total, "share": {k: v / total for k, v in by_kind.items()},
            "top": [{"name": n[:120], "us": us, "calls": calls, "share": us / total, "kind": kind_of(n)}
                    for n, us, calls in ranked]}


def profile_substrate(substrate: str, checkpoint: Path, device: torch.device, worlds: int, steps: int,
                      compile: bool = False) -> dict[str, Any]:
    """Profile `steps` eager calls of DreamWorlds.step over `worlds` worlds (`compile`: the layers compiled,
    WorldModel.compiled_layers); per call figures."""
    from torch.profiler import ProfilerActivity, profile

    from actionparty_env.env import DreamWorlds

    sim = DreamWorlds(substrate, checkpoint=checkpoint, num_worlds=worlds, device=device, cuda_graph=False,
                      compile=compile)
    sim.reset(list(range(worlds)), reseed=0)
    gen = torch.Generator().manual_seed(0)
    actions = torch.randint(0, sim.game.num_actions, (steps, worlds, sim.num_players), generator=gen).to(device)
    for t in range(8 if compile else 4):  # fill the KV cache's window (and compile): profiled steps attend to it all
        sim.step(actions[t % steps])
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    if cuda:
        torch.cuda.synchronize(device)
    with profile(activities=activities) as prof:
        for t in range(steps):
            sim.step(actions[t])
        if cuda:
            torch.cuda.synchronize(device)
    if cuda:  # kernels: the events that ran on the device
        events = [(e.key, e.self_device_time_total / steps, e.count // steps) for e in prof.key_averages()
                  if e.self_device_time_total > 0 and e.device_type == torch.autograd.DeviceType.CUDA]
    else:  # operators' own CPU time
        events = [(e.key, e.self_cpu_time_total / steps, e.count // steps) for e in prof.key_averages()
                  if e.self_cpu_time_total > 0]
    return {"substrate": substrate, "worlds": worlds, "steps": steps, **summarise(events)}


def _markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    lines = [f"# Where a batched dream step's time goes ({doc['device']})", "",
             f"Command: `{doc['command']}`  ",
             f"Machine: {m.get('gpu') or m['cpu']}; {m['cores']} CPU cores, torch {m['torch']}; commit {m['git_commit']}, "
             f"{m['date']}.  ", f"Model: {doc['model']}.", "",
             "One call = every world of the batch steps once, eagerly (no CUDA graph)"
             + (", the layers through torch.compile" if doc.get("compile") else "") + ". Time per call: "
             + ("device (kernel) time" if doc["device"] == "cuda" else "operators' own CPU time")
             + "; attention = fused attention and softmax kernels, matmul = GEMM kernels, other = the rest "
               "(elementwise, norms, gathers, sampling, copies).", "",
             "| substrate | B | time per call ms | attention | matmul | other |", "|---|---|---|---|---|---|"]
    for r in doc["results"]:
        s = r["share"]
        lines.append(f"| {r['substrate']} | {r['worlds']} | {r['total_us'] / 1000:.2f} | {s['attention']:.0%} | "
                     f"{s['matmul']:.0%} | {s['other']:.0%} |")
    for r in doc["results"]:
        lines += ["", f"Top kernels, {r['substrate']}, B={r['worlds']}:", "",
                  "| kernel | kind | calls per call | ms per call | share |", "|---|---|---|---|---|"]
        lines += [f"| `{k['name']}` | {k['kind']} | {k['calls']} | {k['us'] / 1000:.3f} | {k['share']:.1%} |"
                  for k in r["top"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.step_profile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="a checkpoint folder or bundled name (default: the bundled one)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--substrates", nargs="*", default=["coins", "clean_up"])
    p.add_argument("--worlds", type=int, default=256, help="worlds stepped together (B)")
    p.add_argument("--steps", type=int, default=5, help="profiled calls")
    p.add_argument("--compile", action="store_true", help="the layers through torch.compile (WorldModel.compiled_layers)")
    p.add_argument("--out-dir", default=str(RESULTS))
    p.add_argument("--tag", default=None, help="results file suffix (default: the device)")
    args = p.parse_args(argv)
    from actionparty_env.env import resolve_device
    from actionparty_env.games import get_game
    from actionparty_env.model.checkpoint import read_config, resolve_checkpoint
    from benchmarks.provenance import machine, save_results

    if args.worlds < 1 or args.steps < 1:
        p.error(f"--worlds and --steps must be >= 1 (got {args.worlds}, {args.steps})")
    for s in args.substrates:
        get_game(s)  # a ValueError naming close matches, before any work
    device = resolve_device(args.device)
    checkpoint = resolve_checkpoint(args.checkpoint)
    config = read_config(checkpoint)
    model = f"{checkpoint} ({', '.join(f'{k}={v}' for k, v in config['model'].items() if k in ('dim', 'depth', 'heads', 'window'))})"
    results = [profile_substrate(s, checkpoint, device, args.worlds, args.steps, args.compile) for s in args.substrates]
    doc = {"command": "python -m benchmarks.step_profile " + " ".join(argv if argv is not None else sys.argv[1:]),
           "device": device.type, "model": model, "compile": args.compile,
           "machine": {**machine(), "torch": torch.__version__,
                       "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None},
           "results": results}
    save_results(Path(args.out_dir) / f"step_profile_{args.tag or device.type}", doc, _markdown(doc))


if __name__ == "__main__":
    main()
