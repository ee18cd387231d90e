"""Dream speed: env-steps/s (one step = every player of one world acts once) for one world and for
B worlds batched in one sampler call, peak memory, FLOPs per step, MFU against a stated peak, the
FLOP floor of a call and the share of a call spent outside the model, beside the real Melting Pot
on one core of the same machine.

On an H200 (the bundled checkpoint; MFU counted against 790 TFLOP/s of bf16, issue 14's figure):

    python -m benchmarks.speed --device cuda --batches 1 16 64 256 1024 --peak-tflops 790 --tag h200

On a CPU, a small B list (no peak is assumed there; give --peak-tflops for an MFU column):

    python -m benchmarks.speed --device cpu --substrates coins --batches 1 16 --threads 1
    python -m benchmarks.speed --device cpu --random-init training/configs/h100.yaml --batches 1 16 64

Rows per substrate: `env` is DreamParallelEnv (the user's single-world path: dict actions, numpy
views, infos); `B=...` is DreamWorlds, the core of DreamVecEnv: one simulator call for B worlds plus
the batched view crop and the copy of all views to host memory; `copy-last` is the same env around
the copy-last-frame baseline, i.e. the env's own overhead without a model; `real` is the real
Melting Pot's env steps/s (RealParallelEnv's reads, benchmarks.real_speed) on this machine.
Model-bound columns: GFLOP/step is one world-step's FLOPs (torch FlopCounterMode: matmuls and
attention, at B=1); TFLOP/s that times env-steps/s; MFU that over `--peak-tflops`; `floor ms` the
time a call's FLOPs take at that peak (the fastest the call could be); `outside` the share of a
call's time spent outside the transformer passes (`WorldModel.run`: every layer), i.e. in embedding,
heads, decoding, cache bookkeeping, the view crop and the copy to host, timed on a few extra calls
with the device synchronised around each pass.
`--random-init CONFIG` measures a randomly initialised model with that training config's
architecture (speed does not depend on the weights), its codebook made of the real start frames'
patches padded to `--vocab` codes; it needs Melting Pot for the start states.
Writes benchmarks/results/speed_<device>.json and .md with the machine, command and git commit.
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_SUBSTRATES = ("coins", "clean_up", "territory__open", "allelopathic_harvest__open")
# The peak an H200's bf16 MFU is counted against by default: issue 14's figure. NVIDIA's datasheet gives
# 989 dense (1979 with sparsity) for the SXM part and 835 for the NVL; --peak-tflops picks another.
H200_BF16_TFLOPS = 790.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        try:  # Linux: writing 5 to clear_refs resets the process's peak resident set size (VmHWM)
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass


def _peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _timed(step, device: torch.device, steps: int, max_seconds: float, compiled: bool = False) -> tuple[int, float]:
    """Run `step` at least twice and until `steps` steps or `max_seconds`; return (steps, seconds)."""
    # Warm-up: allocations, kernels, the KV cache filling its window, on a GPU the step's CUDA graph,
    # recorded at the window's second full step (model/step_graph.py), and compiled layers' every shape.
    for _ in range(8 if device.type == "cuda" or compiled else 2):
        step()
    _sync(device)
    done, start = 0, time.perf_counter()
    while done < steps and (done < 2 or time.perf_counter() - start < max_seconds):
        step()
        done += 1
    _sync(device)
    return done, time.perf_counter() - start


def measure_batched(substrate: str, checkpoint: Path, device: torch.device, num_worlds: int, steps: int,
                    max_seconds: float, **sim_kwargs) -> dict[str, Any]:
    """B worlds in one simulator call, views cropped and copied to host memory as DreamVecEnv does."""
    from actionparty_env.env import DreamWorlds

    worlds = DreamWorlds(substrate, checkpoint=checkpoint, num_worlds=num_worlds, device=device, **sim_kwargs)
    _reset_peak(device)
    worlds.reset(list(range(num_worlds)), reseed=0)
    gen = torch.Generator().manual_seed(0)
    actions = torch.randint(0, worlds.game.num_actions, (64, num_worlds, worlds.num_players), generator=gen)
    actions = actions.to(device)
    t = iter(range(10**9))

    def step():
        np.ascontiguousarray(worlds.step(actions[next(t) % 64]).cpu().numpy())

    n, seconds = _timed(step, device, steps, max_seconds, sim_kwargs.get("compile", False))
    row = {"num_worlds": num_worlds, "steps": n, "seconds": round(seconds, 3),
           "env_steps_per_s": num_worlds * n / seconds, "ms_per_call": 1000 * seconds / n,
           "peak_mib": round(_peak_mib(device), 1)}
    if getattr(worlds.sim, "step_graph", None) is None:  # a replayed graph never calls the model's passes
        in_model, total = time_in_model(worlds.sim.model, step, device, calls=min(n, 5))
        row["outside_model"] = 1 - in_model / total
    return row


def time_in_model(model, step, device: torch.device, calls: int) -> tuple[float, float]:
    """(seconds inside `model.run`, seconds in all) over `calls` calls of `step`. The device is
    synchronised around every pass, so the split is exact but the calls are slower than untimed ones."""
    run, inside = model.run, 0.0

    def timed_run(*args, **kwargs):
        nonlocal inside
        _sync(device)
        start = time.perf_counter()
        out = run(*args, **kwargs)
        _sync(device)
        inside += time.perf_counter() - start
        return out

    model.run = timed_run  # an instance attribute: the sampler's `self.model.run(...)` finds it first
    try:
        _sync(device)
        start = time.perf_counter()
        for _ in range(calls):
            step()
        _sync(device)
        return inside, time.perf_counter() - start
    finally:
        del model.run


def measure_env(substrate: str, checkpoint: Path, device: torch.device, steps: int, max_seconds: float,
                simulator=None, **sim_kwargs) -> dict[str, Any]:
    """DreamParallelEnv, one world, as a PettingZoo user steps it."""
    from actionparty_env.env import parallel_env

    env = parallel_env(substrate, checkpoint=checkpoint, device=device, max_cycles=10**9, simulator=simulator,
                       **sim_kwargs)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    n_actions = env.game.num_actions

    def step():
        env.step({a: int(rng.integers(n_actions)) for a in env.agents})

    n, seconds = _timed(step, device, steps, max_seconds, sim_kwargs.get("compile", False))
    return {"steps": n, "seconds": round(seconds, 3), "env_steps_per_s": n / seconds}


def _cpu_attention_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    """FlopCounterMode's formula for the CPU's fused attention kernel, which it does not count itself
    (torch 2.13: 0 FLOPs, so the CPU tables of 2026-12-01 left attention out of GFLOP/step)."""
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query, key, value)


def flops_per_step(substrate: str, checkpoint: Path, device: torch.device, **sim_kwargs) -> float:
    """FLOPs of one world-step (matmuls and attention, counted by torch's FlopCounterMode)."""
    from torch.utils.flop_counter import FlopCounterMode

    from actionparty_env.env import DreamWorlds

    # Counted on the eager step: a replayed graph's kernels never pass through torch's dispatcher, nor do
    # a compiled layer's (the same FLOPs).
    worlds = DreamWorlds(substrate, checkpoint=checkpoint, num_worlds=1, device=device,
                         **{**sim_kwargs, "cuda_graph": False, "compile": False})
    worlds.reset([0], reseed=0)
    actions = torch.zeros(1, worlds.num_players, dtype=torch.long, device=device)
    for _ in range(4):  # fill the KV cache's window: later steps attend to the full context
        worlds.step(actions)
    cpu_attention = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops}
    with FlopCounterMode(display=False, custom_mapping=cpu_attention) as counter:
        worlds.step(actions)
    return float(counter.get_total_flops())


def real_env_speed(substrate: str, steps: int) -> float | str:
    try:
        from benchmarks.real_speed import measure
    except ImportError as e:  # e.g. no Melting Pot on this machine
        return f"unavailable ({e})"
    try:
        return measure(substrate, steps)["env_steps_per_s"]
    except ImportError as e:
        return f"unavailable ({e})"


def random_init_checkpoint(config_yaml: str, substrates: list[str], vocab: int, folder: Path) -> Path:
    """A randomly initialised model with the architecture of a training config (all catalog games),
    start states from real resets, codebook = the start frames' patches padded with random ones."""
    import yaml

    from actionparty_env.games import load_catalog
    from actionparty_env.model.checkpoint import save_checkpoint
    from actionparty_env.model.codebook import Codebook, unique_patches
    from actionparty_env.model.network import ModelConfig, WorldModel
    from actionparty_env.simulator import StartStates

    catalog = load_catalog()
    games = sorted(catalog)
    names = sorted({a for g in catalog.values() for a in g.action_names})
    max_actions = max(g.num_actions for g in catalog.values())
    starts = {s: [StartStates.from_real(s, seed) for seed in range(2)] for s in substrates}
    real = np.concatenate([unique_patches(st.frame) for sts in starts.values() for st in sts])
    pad = np.random.default_rng(0).integers(0, 256, (max(vocab - len(real), 0), 192), dtype=np.uint8)
    book = Codebook.from_patch_sets([real, pad])
    arch = yaml.safe_load(Path(config_yaml).read_text())["model"]
    cfg = ModelConfig(vocab_size=len(book), num_games=len(games), num_action_names=len(names),
                      max_actions=max_actions, **arch)
    torch.manual_seed(0)
    model = WorldModel(cfg, games, names)
    model.patches.copy_(torch.from_numpy(book.patches.copy()))
    for g, name in enumerate(games):
        ids = [names.index(a) for a in catalog[name].action_names]
        model.action_ids[g, : len(ids)] = torch.tensor(ids)
    save_checkpoint(model, folder)
    StartStates(starts).save(folder)
    return folder


def measure_substrate(record: dict, substrate: str, checkpoint: Path, device: torch.device, args, bar,
                      **sim_kwargs) -> None:
    """Fill `record` with every run for one substrate (FLOPs, env, copy-last, each B, real)."""
    from actionparty_env.games import get_game
    from actionparty_env.simulator import CopyLastFrameSimulator

    record["gflop_per_step"] = flops_per_step(substrate, checkpoint, device, **sim_kwargs) / 1e9
    record["rows"].append({"run": "env", **measure_env(substrate, checkpoint, device, args.steps, args.max_seconds,
                                                       **sim_kwargs)})
    bar.update()
    copy_last = functools.partial(CopyLastFrameSimulator, get_game(substrate))
    record["rows"].append({"run": "copy-last", **measure_env(substrate, checkpoint, device, args.steps,
                                                             args.max_seconds, simulator=copy_last)})
    bar.update()
    too_slow = False
    for b in args.batches:
        if too_slow:
            record["rows"].append({"run": f"B={b}", "skipped": "skipped: the previous B took over max-seconds/4 per call"})
        else:
            try:
                row = measure_batched(substrate, checkpoint, device, b, args.steps, args.max_seconds, **sim_kwargs)
                record["rows"].append({"run": f"B={b}", **row})
                too_slow = row["ms_per_call"] > 1000 * args.max_seconds / 4
            except torch.cuda.OutOfMemoryError:
                record["rows"].append({"run": f"B={b}", "error": "out of GPU memory"})
                torch.cuda.empty_cache()
                too_slow = True
        bar.update()
    record["real_env_steps_per_s"] = real_env_speed(substrate, args.real_steps)
    bar.update()


def _markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    peak = doc.get("peak_tflops")
    lines = [f"# Dream speed ({doc['device']})", "",
             f"Command: `{doc['command']}`  ",
             f"Machine: {m.get('gpu') or m['cpu']}; {m['cores']} CPU cores, torch {m['torch']} ({m['threads']} threads); "
             f"commit {m['git_commit']}, {m['date']}; 1-minute load average {m['load_average_1min']}.  ",
             f"Model: {doc['model']}; sampling steps {doc['sampling_steps']}; sprite constraint "
             f"{'on where the checkpoint has sprites.npz' if doc.get('consistent_sprites', True) else 'off'}.", "",
             "Env-steps/s: one step = every player of one world acts once. `env` = DreamParallelEnv (one world, "
             "dict actions, numpy views); `B=n` = n worlds in one sampler call plus the batched view crop and the "
             "copy of all views to host (DreamVecEnv's core); `copy-last` = the same env around the copy-last-frame "
             "baseline (env overhead alone); `real` = RealParallelEnv on one core of this machine "
             "(benchmarks.real_speed). GFLOP/step = FLOPs per world-step (torch FlopCounterMode: matmuls + "
             "attention); TFLOP/s = that x env-steps/s; "
             + (f"MFU = TFLOP/s / {peak:g} TFLOP/s (the stated peak); floor = the call's FLOPs at that peak, the "
                "fastest the call could be; " if peak else "no peak given (--peak-tflops), so no MFU or floor; ")
             + "outside = the share of a call's time outside the transformer passes (WorldModel.run), timed "
             "with the device synchronised around each pass (not with a CUDA graph, which replays the step whole). "
             + ("The step is recorded as one CUDA graph and replayed (model/step_graph.py)." if doc.get("cuda_graph")
                else "No CUDA graph: the step's kernels are launched one by one.")
             + (" The layers run through torch.compile (WorldModel.compiled_layers)." if doc.get("compile") else ""), "",
             "| substrate | players | map | run | env-steps/s | ms per call | peak MiB | GFLOP/step | TFLOP/s | MFU "
             "| floor ms | outside |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["results"]:
        head = f"| {r['substrate']} | {r['players']} | {r['map']} "
        gflop = r.get("gflop_per_step")
        for row in r["rows"]:
            if "env_steps_per_s" not in row:
                lines.append(head + f"| {row['run']} | {row.get('skipped') or row.get('error')} |" + " |" * 7)
                continue
            rate = row["env_steps_per_s"]
            ms = row.get("ms_per_call", 1000 / rate)
            cells = [""] * 5
            if gflop is not None and row["run"] != "copy-last":
                tflops = gflop * rate / 1000
                worlds = row.get("num_worlds", 1)
                cells[:2] = [f"{gflop:.2f}", f"{tflops:.3f}"]
                if peak:
                    cells[2:4] = [f"{tflops / peak:.2%}", f"{worlds * gflop / peak:.3g}"]  # GFLOP / TFLOP/s = ms
            if "outside_model" in row:
                cells[4] = f"{row['outside_model']:.0%}"
            lines.append(head + f"| {row['run']} | {rate:.1f} | {ms:.1f} | {row.get('peak_mib', '')} | "
                         + " | ".join(cells) + " |")
        if "real_env_steps_per_s" in r:
            real = r["real_env_steps_per_s"]
            lines.append(head + f"| real (1 core) | {f'{real:.0f}' if isinstance(real, float) else real} |" + " |" * 7)
        if "error" in r:
            lines.append(head + f"| | failed: {r['error']} |" + " |" * 7)
    need = [f"{r['substrate']} {r['gflop_per_step'] * 10:.0f}" for r in doc["results"] if r.get("gflop_per_step")]
    if need:
        lines += ["", "What bounds it: every world-step costs the FLOPs above (one pass that commits the block and "
                  "reads the players' next states, plus one pass per sampling step, each over every map cell). "
                  "10,000 env-steps/s needs that x 10,000 sustained: " + ", ".join(need) + " TFLOP/s."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="actionparty benchmark speed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", default=None,
                     help="a checkpoint folder (default: the bundled one, as `actionparty benchmark fidelity`)")
    src.add_argument("--random-init", metavar="CONFIG_YAML", help="random weights with this training config's model")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--substrates", nargs="*", default=list(DEFAULT_SUBSTRATES),
                   help=f"substrates to measure (default: {' '.join(DEFAULT_SUBSTRATES)})")
    p.add_argument("--batches", nargs="*", type=int, default=[1, 16, 64, 256, 1024],
                   help="batched world counts B (default: 1 16 64 256 1024)")
    p.add_argument("--steps", type=int, default=50, help="timed steps per run (at most)")
    p.add_argument("--max-seconds", type=float, default=20.0, help="time per run (at least 2 steps are timed)")
    p.add_argument("--sampling-steps", type=int, default=None, help="unmasking passes (default: the sampler's)")
    p.add_argument("--vocab", type=int, default=4096, help="codebook size for --random-init")
    p.add_argument("--free-sprites", action="store_true", help="draw without the sprite constraint (model/sprites.py)")
    p.add_argument("--no-cuda-graph", action="store_true", help="on a GPU, launch the step's kernels one by one "
                                                                   "instead of replaying it as a CUDA graph")
    p.add_argument("--compile", action="store_true", help="run the model's layers through torch.compile "
                                                           "(WorldModel.compiled_layers; the warm-up compiles)")
    p.add_argument("--real-steps", type=int, default=300, help="real env steps for the `real` row (default: 300)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="the peak TFLOP/s the MFU and the floor are counted against (default on CUDA: 790, an "
                        "H200's bf16 as issue 14 states it; on a CPU: none)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out-dir", default=str(RESULTS), help="where speed_<tag>.json/.md go (default: %(default)s)")
    p.add_argument("--tag", default=None, help="results file suffix: speed_<tag>.json/.md (default: the device)")
    args = p.parse_args(argv)
    from tqdm import tqdm

    from actionparty_env.env import resolve_device
    from actionparty_env.games import get_game
    from actionparty_env.model.checkpoint import read_config
    from benchmarks.provenance import machine

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    peak = args.peak_tflops if args.peak_tflops is not None else (H200_BF16_TFLOPS if device.type == "cuda" else None)
    for s in args.substrates:
        get_game(s)  # a ValueError naming close matches, before any work
    tmp = None
    if args.random_init:
        tmp = tempfile.TemporaryDirectory()
        checkpoint = random_init_checkpoint(args.random_init, args.substrates, args.vocab, Path(tmp.name))
        model_desc = f"random weights, architecture of {args.random_init}"
    else:
        from actionparty_env.model.checkpoint import resolve_checkpoint

        checkpoint = resolve_checkpoint(args.checkpoint)
        model_desc = str(checkpoint)
    config = read_config(checkpoint)
    model_desc += f" ({', '.join(f'{k}={v}' for k, v in config['model'].items() if k in ('dim', 'depth', 'heads', 'window', 'vocab_size'))})"
    sim_kwargs = {"sampling_steps": args.sampling_steps} if args.sampling_steps else {}
    sim_kwargs["consistent_sprites"] = not args.free_sprites
    sim_kwargs["cuda_graph"] = not args.no_cuda_graph
    sim_kwargs["compile"] = args.compile
    results = []
    bar = tqdm(total=len(args.substrates) * (len(args.batches) + 3), desc="dream speed")
    for substrate in args.substrates:
        game = get_game(substrate)
        record: dict[str, Any] = {"substrate": substrate, "players": game.num_players,
                                  "map": f"{game.map_rows}x{game.map_cols}", "rows": []}
        results.append(record)
        if substrate not in config["games"]:
            record["error"] = "not in the checkpoint"
            bar.update(len(args.batches) + 3)
            continue
        try:
            measure_substrate(record, substrate, checkpoint, device, args, bar, **sim_kwargs)
        except Exception as e:  # one substrate's failure (e.g. its start states) must not lose the others
            record["error"] = f"{type(e).__name__}: {e}"
    bar.close()
    machine = {**machine(), "torch": torch.__version__, "threads": torch.get_num_threads(),
               "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}
    command = "python -m benchmarks.speed " + " ".join(argv if argv is not None else sys.argv[1:])
    doc = {"command": command.strip(), "device": device.type, "model": model_desc,
           "sampling_steps": args.sampling_steps or "sampler default", "consistent_sprites": not args.free_sprites,
           "cuda_graph": device.type == "cuda" and not args.no_cuda_graph, "compile": args.compile,
           "peak_tflops": peak,
           "machine": machine,
           "results": results}
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tag = args.tag or device.type
    (out / f"speed_{tag}.json").write_text(json.dumps(doc, indent=1) + "\n")
    (out / f"speed_{tag}.md").write_text(_markdown(doc))
    print(_markdown(doc))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
