"""Recording and reading speed of the LMDB dataset, on this machine.

    python -m benchmarks.record_speed                              # this machine, 2 workers
    python -m benchmarks.record_speed --workers 16 --out-suffix gpu  # the GPU machine's 16 cores

1. Recording: `training.record.record` on every substrate (one episode of --steps steps each by
   default) with --workers engine processes: frames/s over the wall clock (engine builds, steps,
   zlib, LMDB writes), stored bytes per frame (compressed frame only, and the whole record), and
   per substrate the build time, the engine's steps/s on one core and bytes/frame. The per-core
   numbers give the throughput of longer episodes: frames/s ~= workers * T / (build + T / steps/s).
2. Reading: `ClipDataset` + `BucketBatchSampler` + `collate_clips` through a torch DataLoader with
   0 and 2 (and --reader-workers) workers, clips/s in steady state (after the first batch), with
   and without a codebook (`actionparty_env.model.codebook.Codebook`, built from the data).

Writes benchmarks/results/record_speed_<suffix>.json and .md (machine, command, git commit).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from benchmarks.provenance import git_commit, machine, save_results
from training.check import check_dataset
from training.clips import BucketBatchSampler, ClipDataset, collate_clips
from training.record import RecordConfig, record
from training.store import list_episodes, read_episode

RESULTS = Path(__file__).resolve().parent / "results"


def bench_record(path: str, substrates: tuple[str, ...], episodes: int, steps: int, workers: int) -> dict:
    summary = record(RecordConfig(path, substrates, episodes, steps, workers, seed=0))
    print(summary)
    report = check_dataset(path, progress=False)
    if report.problems:
        raise RuntimeError(f"the recorded dataset has problems: {report.problems[:5]}")
    per = {}
    for sub, t in sorted(summary.timing.items()):
        frames = report.frames[sub]
        count = sum(n for (s, _), n in report.counts.items() if s == sub)
        per[sub] = {"episodes": count, "frames": frames, "build_s": t["build_s"] / count,
                    "steps_per_s_one_core": t["steps"] / max(t["steps_s"], 1e-9),
                    "frame_bytes": report.frame_bytes[sub] / frames}
    frames = sum(report.frames.values())
    # One episode of each substrate, T steps long, spread over the workers: builds amortise.
    long_run = {t: workers * len(per) * (t + 1) / sum(p["build_s"] + t / p["steps_per_s_one_core"]
                                                       for p in per.values())
                for t in (1000, 5000)}
    return {"substrates": len(per), "episodes_per_substrate": episodes, "steps": steps,
            "workers": workers, "episodes": summary.episodes, "frames": summary.frames,
            "seconds": summary.seconds, "frames_per_s": summary.frames / summary.seconds,
            "megabytes": summary.bytes / 2**20,
            "frame_bytes_per_frame": sum(report.frame_bytes.values()) / frames,
            "record_bytes_per_frame": summary.bytes / summary.frames,
            "failed": summary.failed, "estimated_frames_per_s_by_episode_steps": long_run,
            "per_substrate": per}


def build_codebook(path: str):
    from actionparty_env.model.codebook import Codebook, unique_patches

    sets = []
    for key in list_episodes(path):
        frames = read_episode(path, key).frames
        sets.append(np.unique(np.concatenate([unique_patches(f) for f in frames[::5]]), axis=0))
    return Codebook.from_patch_sets(sets)


def bench_reader(path: str, clip_len: int, batch_size: int, workers: int, seconds: float,
                 codebook=None) -> dict:
    clips = ClipDataset(path, clip_len=clip_len, split="train", codebook=codebook)
    sampler = BucketBatchSampler(clips, batch_size, seed=0, shuffle=True)
    loader = DataLoader(clips, batch_sampler=sampler, collate_fn=collate_clips, num_workers=workers)
    n, start, epoch = 0, None, 0
    while start is None or time.perf_counter() - start < seconds:
        sampler.set_epoch(epoch)
        for batch in loader:
            if start is None:  # steady state: the first batch pays for starting the workers
                start = time.perf_counter()
                continue
            n += len(batch["game"])
            if time.perf_counter() - start >= seconds:
                break
        epoch += 1
    elapsed = time.perf_counter() - start
    return {"workers": workers, "codebook": codebook is not None, "clip_len": clip_len,
            "batch_size": batch_size, "clips": n, "seconds": elapsed, "clips_per_s": n / elapsed}


def to_markdown(result: dict) -> str:
    r, m = result["record"], result["machine"]
    lines = [f"# Dataset recording and reading speed ({result['suffix']})", "",
             f"Machine: {m['cpu']}, {m['cores']} cores (load average {m['load_average_1min']:.1f} "
             f"at start, {m['load_average_at_end']:.1f} at end: a load above the core count means "
             f"other jobs shared the CPUs); Python {m['python']}, torch {m['torch']}.",
             f"Command: `{result['command']}`; git commit {result['commit'][:12]}.", "",
             "## Recording", "",
             f"{r['substrates']} substrates x {r['episodes_per_substrate']} episode(s) x {r['steps']} "
             f"steps, policy mix, {r['workers']} workers: **{r['frames_per_s']:.0f} frames/s** over "
             f"the wall clock ({r['frames']} frames in {r['seconds']:.1f} s, engine builds included; "
             f"{r['megabytes']:.1f} MB). Stored bytes per frame: **{r['frame_bytes_per_frame']:.0f}** "
             f"(zlib-6 frame), {r['record_bytes_per_frame']:.0f} (whole record)."
             + (f" Failed: {r['failed']}." if r["failed"] else ""), "",
             "From the per-core numbers below, episodes of T steps on all substrates would record at "
             + ", ".join(f"{v:.0f} frames/s (T = {t})" for t, v in
                         r["estimated_frames_per_s_by_episode_steps"].items())
             + f" with {r['workers']} workers (workers x frames / (build + T / steps/s)).", "",
             "| substrate | frames | build (s) | steps/s, one core | bytes/frame |",
             "|---|---:|---:|---:|---:|"]
    for sub, p in r["per_substrate"].items():
        lines.append(f"| {sub} | {p['frames']} | {p['build_s']:.2f} | {p['steps_per_s_one_core']:.0f} "
                     f"| {p['frame_bytes']:.0f} |")
    lines += ["", "## Reading (ClipDataset -> BucketBatchSampler -> DataLoader)", "",
              "| DataLoader workers | codebook | clip length | batch | clips/s |", "|---:|---|---:|---:|---:|"]
    for x in result["reader"]:
        lines.append(f"| {x['workers']} | {'yes' if x['codebook'] else 'no'} | {x['clip_len']} | "
                     f"{x['batch_size']} | {x['clips_per_s']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="recording processes")
    parser.add_argument("--substrates", default="all")
    parser.add_argument("--episodes", type=int, default=1, help="episodes per substrate")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--clip-len", type=int, default=4, help="frames per clip (window + 1; h100.yaml: 4)")
    parser.add_argument("--batch-size", type=int, default=48, help="h100.yaml: 48")
    parser.add_argument("--reader-workers", default="0,2", help="DataLoader worker counts to time")
    parser.add_argument("--reader-seconds", type=float, default=10.0)
    parser.add_argument("--out-suffix", default="cpu")
    parser.add_argument("--data", default=None, help="record here and keep it (default: a temp dir)")
    args = parser.parse_args(argv)
    host = {**machine(), "torch": torch.__version__}
    path = args.data or tempfile.mkdtemp(prefix="record_speed_")
    try:
        rec = bench_record(path, tuple(args.substrates.split(",")), args.episodes, args.steps,
                           args.workers)
        codebook = build_codebook(path)
        reader = [bench_reader(path, args.clip_len, args.batch_size, int(w), args.reader_seconds, cb)
                  for cb in (None, codebook) for w in args.reader_workers.split(",")]
        for x in reader:
            print(x)
    finally:
        if args.data is None:
            shutil.rmtree(path, ignore_errors=True)
    host["load_average_at_end"] = os.getloadavg()[0]
    result = {"suffix": args.out_suffix, "machine": host, "commit": git_commit(),
              "command": " ".join(["python -m benchmarks.record_speed", *(sys.argv[1:] if argv is None else argv)]),
              "record": rec, "reader": reader}
    save_results(RESULTS / f"record_speed_{args.out_suffix}", result, to_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
