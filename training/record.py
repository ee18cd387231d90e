"""`actionparty record`: record real Melting Pot episodes into an LMDB dataset (schema v1).

    actionparty record --out data/mp --substrates all --episodes-per-substrate 200 --steps 1000 \\
        --workers 16 --seed 0 [--policy mix|persistent_random|rl_mix|sb3:PATH.zip] [--split train]
    python -m training.record ...            # the same, without the console script

How it runs. Every episode is a task keyed by (substrate, episode number) whose seed is derived from
(base seed, substrate, split, number) (training/splits.py). One worker process per core (spawned,
so no Lua state is shared) runs the engine and a behaviour policy (training/policies.py; a closed-loop
one such as `rl_mix` sees each step's real cells, facing, alive flags, frame and rewards) for up to
`--steps` steps, compresses each frame with zlib (level 6) and sends the arrays back; the parent is
the only LMDB writer and stores each finished episode in one transaction. Episodes that end early
are kept with their real length.

Crashes. Some substrates abort the whole process from inside dmlab2d (factory_commons__either_or: a
Lua error). Each worker holds one task at a time, so a dead worker is blamed on exactly its task:
the parent starts a new worker and retries that episode with the seed + 1000003 * attempt (stored in
the header); after 3 failed attempts the substrate is marked failed (summary, meta record), its
remaining episodes are dropped, and the rest goes on. Exit status 1 if any substrate failed.

Resume. Rerunning the same command skips the episode keys already present and records the rest
with the same seeds; a killed run leaves no partial episode. The dataset's meta record keeps each
(split, substrate)'s steps, base seed and policy, and a run that asks for different ones is refused
(its episodes would not match), so a resumed dataset equals an uninterrupted one.

Held-out episodes: `actionparty dataset split DIR --val K --test K` (training/splits.py).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import os
import re
import sys
import tempfile
import time
import zlib
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np
from tqdm import tqdm

# Workers import this module (spawn): its top level imports only what a worker runs (policies,
# splits); the parent imports the store (lmdb) where it writes.
from training.policies import State, check_policy_name, make_policy
from training.splits import MAX_ATTEMPTS, SPLITS, check_split, episode_key, episode_seed, key_index

FRAME_ZLIB_LEVEL = 6


@dataclass(frozen=True)
class RecordConfig:
    out: str
    substrates: tuple[str, ...]          # or ("all",)
    episodes_per_substrate: int
    steps: int
    workers: int = os.cpu_count() or 1
    seed: int = 0
    policy: str = "mix"
    split: str = "train"


@dataclass(frozen=True)
class Task:
    """One episode attempt: everything a worker needs, nothing it must look up."""
    substrate: str
    number: int                          # episode number within its split
    split: str
    base_seed: int
    steps: int
    policy: str
    roles: tuple[str, ...]
    action_set: tuple[dict, ...]
    attempt: int = 0
    return_raw: bool = False

    @property
    def key(self) -> str:
        return episode_key(self.substrate, key_index(self.split, self.number))

    @property
    def seed(self) -> int:
        return episode_seed(self.base_seed, self.substrate, self.split, self.number, self.attempt)


@dataclass
class RecordSummary:
    episodes: int = 0                    # recorded by this run
    skipped: int = 0                     # already in the dataset
    frames: int = 0
    bytes: int = 0                       # stored record bytes
    seconds: float = 0.0
    failed: dict[str, str] = field(default_factory=dict)     # substrate -> last error
    timing: dict[str, dict] = field(default_factory=dict)    # substrate -> summed worker timing
    raw: dict[str, dict] = field(default_factory=dict)       # key -> engine output (return_raw)

    def __str__(self) -> str:
        fps = self.frames / max(self.seconds, 1e-9)
        lines = [f"recorded {self.episodes} episodes ({self.skipped} already present), "
                 f"{self.frames} frames, {self.bytes / 2**20:.1f} MB in {self.seconds:.1f} s: "
                 f"{fps:.0f} frames/s"]
        lines += [f"FAILED substrate {s}: {reason}" for s, reason in sorted(self.failed.items())]
        return "\n".join(lines)


# ----------------------------------------------------------------------------- worker side

def run_episode(task: Task) -> dict:
    """Play one episode in this process. Returns the header, the zlib-compressed frames, the
    per-step arrays in their stored dtypes, the time spent building and stepping (not stored),
    and the engine's raw output if the task asks."""
    from actionparty_env.real import MeltingPotEngine  # the engine only in workers
    from actionparty_env.games import get_game

    seed = task.seed
    t0 = time.perf_counter()
    engine = MeltingPotEngine()
    obs = engine.build(task.substrate, task.roles, seed)
    t1 = time.perf_counter()
    policy = make_policy(task.policy, task.action_set, len(task.roles), seed)
    height, width = obs.frame.shape[:2]
    torus = bool(get_game(task.substrate).view.get("torus", False))
    frames, raw_frames = [zlib.compress(obs.frame.tobytes(), FRAME_ZLIB_LEVEL)], [obs.frame]
    cells, facing, alive = [obs.cells], [obs.facing], [obs.alive]
    actions, rewards = [], []
    for step in range(task.steps):
        # closed-loop policies (rl_mix) act on the real state before the step; open-loop ones ignore it
        act = policy.act(step, State(obs.players, height // 8, width // 8, torus, obs.frame, obs.rewards, obs.views))
        obs = engine.step(act)
        actions.append(act)
        rewards.append(obs.rewards)
        frames.append(zlib.compress(obs.frame.tobytes(), FRAME_ZLIB_LEVEL))
        cells.append(obs.cells)
        facing.append(obs.facing)
        alive.append(obs.alive)
        if task.return_raw:
            raw_frames.append(obs.frame)
        if obs.done:
            break
    n, length = len(task.roles), len(actions)
    timing = {"build_s": t1 - t0, "steps_s": time.perf_counter() - t1, "steps": length}
    header = {
        "substrate": task.substrate, "roles": list(task.roles), "seed": seed,
        "policy": policy.describe(), "num_players": n, "map_rows": height // 8,
        "map_cols": width // 8, "length": length, "split": task.split, "number": task.number,
        "base_seed": task.base_seed, "attempt": task.attempt, "steps_requested": task.steps,
        "ended": length < task.steps,
    }
    as_array = lambda xs, dtype, shape: np.asarray(xs, dtype=dtype).reshape(shape)  # noqa: E731
    parts = {
        "header": header, "frames": frames, "timing": timing,
        "actions": as_array(actions, np.int16, (length, n)),
        "cells": as_array(cells, np.int16, (length + 1, n, 2)),
        "facing": as_array(facing, np.int8, (length + 1, n)),
        "alive": as_array(alive, bool, (length + 1, n)),
        "rewards": as_array(rewards, np.float32, (length, n)),
    }
    if task.return_raw:
        parts["raw"] = {"frames": np.stack(raw_frames), "cells": np.stack(cells),
                        "facing": np.stack(facing), "alive": np.stack(alive),
                        "actions": as_array(actions, np.int64, (length, n)),
                        "rewards": as_array(rewards, np.float32, (length, n))}
    return parts


def _worker_main(conn, log_path: str) -> None:
    """Serve tasks until told to stop (None) or the parent is gone. stdout and stderr (Lua's
    warnings on every build, its last words if the engine aborts) go to `log_path`, emptied for
    each task, so they neither bury the progress bar nor get lost; an orderly exit removes it
    (after a crash the parent reads it, then removes it). One torch thread: the workers are one per core,
    and a policy network (`--policy sb3:`) on every core's threads in every worker ran 8 frames/s on 16
    cores, against about 1,100 (the H200 lease of 2026-12-01)."""
    import torch

    torch.set_num_threads(1)
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND)
    os.dup2(log, 1)
    os.dup2(log, 2)
    try:
        while True:
            try:
                task = conn.recv()
            except (EOFError, OSError):  # the parent is gone (killed, say)
                return
            if task is None:
                return
            os.ftruncate(log, 0)
            try:
                reply = ("ok", run_episode(task))
            except Exception as e:  # a Python-level engine error: retried like a crash
                reply = ("error", f"{type(e).__name__}: {e}")
            try:
                conn.send(reply)
            except OSError:
                return
    finally:
        os.unlink(log_path)


# ----------------------------------------------------------------------------- parent side

class _Worker:
    def __init__(self, ctx):
        fd, self.log_path = tempfile.mkstemp(prefix="actionparty-record-", suffix=".log")
        os.close(fd)
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, self.log_path), daemon=True)
        self.proc.start()
        child.close()

    def last_words(self) -> str:
        """Why the worker died, from what it printed: the first error line (dmlab2d prints the Lua
        error, then a stack trace), else the last line."""
        try:
            with open(self.log_path, errors="replace") as f:
                text = re.sub(r"\x1b\[[0-9;]*m", "", f.read()[-20000:])
        except FileNotFoundError:  # it exited through its own cleanup
            return ""
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("ERROR:")]
        return (errors or lines or [""])[0 if errors else -1][-300:]

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()
        Path(self.log_path).unlink(missing_ok=True)  # a worker that exits in order removes it


def run_tasks(tasks: Sequence[Task], workers: int) -> Iterator[tuple[Task, dict | None, str]]:
    """Run tasks on `workers` engine processes; yield (task, run_episode's parts, "") as episodes
    finish and (task, None, reason) when a substrate fails for good. Crashed or failing episodes
    are retried with the next attempt's seed; a failed substrate's queued tasks are dropped."""
    ctx = mp.get_context("spawn")  # fresh interpreters: no Lua or LMDB state inherited
    queue, idle, busy, failed = deque(tasks), [], {}, set()
    try:
        while queue or busy:
            while queue and len(busy) < workers:
                task = queue.popleft()
                if task.substrate in failed:
                    continue
                worker = idle.pop() if idle else _Worker(ctx)
                busy[worker] = task
                try:
                    worker.conn.send(task)
                except OSError:  # it died before taking the task: wait() sees its sentinel
                    pass
            if not busy:
                break
            ready = set(wait([w.conn for w in busy] + [w.proc.sentinel for w in busy]))
            for worker in [w for w in busy if w.conn in ready or w.proc.sentinel in ready]:
                task = busy.pop(worker)
                try:
                    status, payload = worker.conn.recv()
                except Exception:  # EOF or a torn message: the worker died mid-episode
                    worker.proc.join()
                    status = "died"
                    payload = (f"worker died (exit code {worker.proc.exitcode}); last output: "
                               f"{worker.last_words()!r}")
                    worker.stop()
                else:
                    idle.append(worker)
                if status == "ok":
                    yield task, payload, ""
                    continue
                tqdm.write(f"{task.key} attempt {task.attempt + 1}/{MAX_ATTEMPTS} "
                           f"(seed {task.seed}) failed: {payload}")
                if task.attempt + 1 < MAX_ATTEMPTS:
                    queue.appendleft(dataclasses.replace(task, attempt=task.attempt + 1))
                else:
                    failed.add(task.substrate)
                    yield task, None, payload
    finally:
        for worker in idle + list(busy):
            worker.stop()


def _resolve_substrates(names: Sequence[str], catalog: dict) -> tuple[str, ...]:
    from actionparty_env.games import get_game

    if tuple(names) == ("all",):
        return tuple(sorted(catalog))
    for name in names:
        get_game(name)  # ValueError naming close matches
    if len(set(names)) != len(names):
        raise ValueError(f"substrates listed twice: {sorted(n for n in set(names) if names.count(n) > 1)}")
    return tuple(names)


def _catalog() -> dict:
    from actionparty_env.games import load_catalog

    return {name: spec.to_dict() for name, spec in load_catalog().items()}


def _plan_meta(meta: dict | None, version: int, cfg: RecordConfig, substrates: Sequence[str]
               ) -> dict:
    """The meta record after adding this run's plan; ValueError if it contradicts the dataset."""
    meta = {"schema_version": version, "catalog": {}, "plan": {}, "failed": {}, **(meta or {})}
    if meta["schema_version"] != version:
        raise ValueError(f"{cfg.out} has schema version {meta['schema_version']}, this recorder "
                         f"writes {version}")
    meta["catalog"] = {**_catalog(), **meta["catalog"]}  # a dataset keeps the catalog it began with
    plan = meta["plan"].setdefault(cfg.split, {})
    for sub in substrates:
        want = {"steps": cfg.steps, "seed": cfg.seed, "policy": cfg.policy}
        have = plan.get(sub)
        if have is not None and {k: have[k] for k in want} != want:
            raise ValueError(
                f"{cfg.out} already holds {cfg.split} episodes of {sub} recorded with "
                f"{ {k: have[k] for k in want} }, this run asks {want}: resume with the same "
                "settings or record into another folder")
        plan[sub] = {**want, "episodes": max(cfg.episodes_per_substrate,
                                             have["episodes"] if have else 0)}
    return meta


def record(cfg: RecordConfig, return_raw: bool = False) -> RecordSummary:
    """Record (or resume) the episodes `cfg` asks for. `return_raw` also hands back each new
    episode's engine output before compression (summary.raw[key]), for tests and debugging."""
    from training import store

    check_split(cfg.split)
    check_policy_name(cfg.policy)
    for name in ("episodes_per_substrate", "steps", "workers"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if not 0 <= cfg.seed < 2**31:
        raise ValueError(f"seed must be in [0, 2**31), got {cfg.seed}")
    key_index(cfg.split, cfg.episodes_per_substrate - 1)  # ValueError if the split's range is too small

    substrates = _resolve_substrates(cfg.substrates, _catalog())
    env = store.open_writer(cfg.out)
    try:
        with env.begin() as txn:
            raw_meta = txn.get(store.META_KEY)
        meta = _plan_meta(json.loads(raw_meta) if raw_meta else None, store.SCHEMA_VERSION, cfg,
                          substrates)
        store.write_meta(env, meta)
        with env.begin() as txn:
            tasks = [Task(sub, j, cfg.split, cfg.seed, cfg.steps, cfg.policy,
                          tuple(meta["catalog"][sub]["roles"]),
                          tuple(meta["catalog"][sub]["action_set"]), return_raw=return_raw)
                     for sub in substrates for j in range(cfg.episodes_per_substrate)]
            todo = [t for t in tasks if txn.get(t.key.encode()) is None]
        summary = RecordSummary(skipped=len(tasks) - len(todo))
        t0 = time.time()
        bar = tqdm(total=len(todo), desc=f"record {cfg.split}", unit="ep")
        for task, parts, reason in run_tasks(todo, min(cfg.workers, max(1, len(todo)))):
            if parts is None:
                summary.failed[task.substrate] = reason
                continue
            blob, offsets = store.pack_frames(parts["frames"])
            episode = store.StoredEpisode(
                parts["header"], blob, offsets, key=task.key,
                **{name: parts[name] for name in store.ARRAYS})
            data = episode.encode()
            with env.begin(write=True) as txn:  # one transaction per episode
                txn.put(task.key.encode(), data, overwrite=False)
            summary.episodes += 1
            summary.frames += episode.header["length"] + 1
            summary.bytes += len(data)
            if "raw" in parts:
                summary.raw[task.key] = parts["raw"]
            timing = summary.timing.setdefault(task.substrate, dict.fromkeys(parts["timing"], 0))
            for k, v in parts["timing"].items():
                timing[k] += v
            bar.update()
            bar.set_postfix(fps=f"{summary.frames / (time.time() - t0):.0f}")
        bar.close()
        summary.seconds = time.time() - t0
        failed = meta["failed"].setdefault(cfg.split, {})
        for sub in substrates:
            failed.pop(sub, None)
        failed.update(summary.failed)
        store.write_meta(env, meta)
    finally:
        env.close()
    return summary


def record_heldout(path: str, counts: dict[str, int], workers: int | None = None
                   ) -> list[RecordSummary]:
    """Record `counts[split]` episodes per substrate of the train plan for each held-out split, with
    the train plan's steps, base seed and policy (only the seeds differ: their own range)."""
    from training.store import read_meta

    plan = read_meta(path).get("plan", {}).get("train")
    if not plan:
        raise ValueError(f"{path} has no train plan in its meta record: record training first")
    for split, k in counts.items():
        check_split(split)
        if split == "train" or k < 0:
            raise ValueError(f"held-out counts must be val/test >= 0, got {split}={k}")
    groups: dict[tuple, list[str]] = {}
    for sub, p in sorted(plan.items()):
        groups.setdefault((p["steps"], p["seed"], p["policy"]), []).append(sub)
    summaries = []
    for split, k in counts.items():
        for (steps, seed, policy), subs in groups.items():
            if k:
                cfg = RecordConfig(path, tuple(subs), k, steps, workers or os.cpu_count() or 1,
                                   seed, policy, split)
                summaries.append(record(cfg))
                print(summaries[-1])
    return summaries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="actionparty record", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="dataset folder (LMDB)")
    parser.add_argument("--substrates", required=True, help="'all' or a comma-separated list")
    parser.add_argument("--episodes-per-substrate", type=int, required=True)
    parser.add_argument("--steps", type=int, required=True, help="steps per episode (fewer if "
                                                                 "the game ends)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0, help="base seed")
    parser.add_argument("--policy", default="mix",
                        help="mix, persistent_random, rl_mix, or sb3:PATH.zip (a trained SB3 policy on half the "
                             "players, rl_mix on the rest: training/policies.py)")
    parser.add_argument("--split", default="train", choices=SPLITS,
                        help="held-out splits get their own seeds and keys (training/splits.py)")
    args = parser.parse_args(argv)
    cfg = RecordConfig(args.out, tuple(s.strip() for s in args.substrates.split(",") if s.strip()),
                       args.episodes_per_substrate, args.steps, args.workers, args.seed,
                       args.policy, args.split)
    try:
        summary = record(cfg)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary)
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
