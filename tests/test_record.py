"""Recording real Melting Pot episodes: read-back, kill and resume, crashed workers, policies.

No substrate replays bit for bit here (player spawn order changes from one build to the next even
with the same env_seed), so frames are compared with what the engine produced in the recording
itself (`record(..., return_raw=True)`), and runs are compared by keys, headers, seeds and actions.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import lmdb
import numpy as np
import pytest

from actionparty_env.games import get_game
from training.check import check_dataset
from training.clips import ClipDataset
from training.policies import action_kinds, make_policy
from training.record import RecordConfig, Task, record, record_heldout, run_tasks
from training.splits import MAX_ATTEMPTS, RETRY_STRIDE, SEED_BASE, SEED_SPAN, check_split, episode_seed
from training.store import list_episodes, read_episode, read_meta

ROOT = Path(__file__).resolve().parents[1]
SUBSTRATES = ("coins", "collaborative_cooking__asymmetric")


def seed_range(split: str) -> range:
    """Every seed an episode of `split` can get (training/splits.py: its base, span and retries)."""
    check_split(split)
    return range(SEED_BASE[split], SEED_BASE[split] + SEED_SPAN + RETRY_STRIDE * MAX_ATTEMPTS)


def test_record_and_read_back(tmp_path):
    cfg = RecordConfig(str(tmp_path), SUBSTRATES, episodes_per_substrate=2, steps=30, workers=2,
                       seed=5)
    summary = record(cfg, return_raw=True)
    assert summary.episodes == 4 and not summary.failed and summary.frames == 4 * 31
    keys = list_episodes(tmp_path)
    assert keys == sorted(summary.raw) == [f"ep/{s}/{j:06d}" for s in SUBSTRATES for j in (0, 1)]
    for key in keys:
        ep, raw = read_episode(tmp_path, key), summary.raw[key]
        sub, number = key.split("/")[1], int(key.split("/")[2])
        spec = get_game(sub)
        h = ep.header
        assert (h["substrate"], h["split"], h["length"], h["num_players"]) == (sub, "train", 30, spec.num_players)
        assert h["seed"] == episode_seed(5, sub, "train", number) and h["attempt"] == 0
        assert h["policy"]["name"] == "mix" and h["roles"] == list(spec.roles)
        assert ep.frames.shape == (31, h["map_rows"] * 8, h["map_cols"] * 8, 3)
        assert np.array_equal(ep.frames, raw["frames"])  # bit-equal to the engine's frames
        for name in ("cells", "facing", "alive", "actions", "rewards"):
            assert np.array_equal(getattr(ep, name), raw[name]), name
        # the stored actions are the policy's, replayed from the stored seed
        policy = make_policy("mix", spec.action_set, spec.num_players, h["seed"])
        assert np.array_equal(ep.actions, np.stack([policy.act() for _ in range(30)]))
    report = check_dataset(tmp_path, progress=False)
    assert report.problems == []
    assert report.counts == {(s, "train"): 2 for s in SUBSTRATES}
    assert all(report.histograms[s].sum() == 2 * 30 * get_game(s).num_players for s in SUBSTRATES)
    clips = ClipDataset(tmp_path, clip_len=4, split="train")
    assert len(clips) == 4 * (30 - 3)
    item = clips[len(clips) - 1]
    assert item["frames"].shape[0] == 4 and item["game"] == clips.games.index(SUBSTRATES[1])

    # resume is a no-op; a contradicting rerun is refused and changes nothing
    again = record(cfg)
    assert (again.episodes, again.skipped) == (0, 4)
    with pytest.raises(ValueError, match="steps"):
        record(RecordConfig(str(tmp_path), ("coins",), 2, steps=31, workers=1, seed=5))
    with pytest.raises(ValueError, match="unknown substrate"):
        record(RecordConfig(str(tmp_path), ("coinz",), 2, steps=30, workers=1, seed=5))
    assert list_episodes(tmp_path) == keys and read_meta(tmp_path)["plan"]["train"]["coins"]["steps"] == 30

    # held-out split: same settings, own seed range, own keys, split in the header
    record_heldout(str(tmp_path), {"val": 1, "test": 1}, workers=2)
    for split, base in (("val", 800000), ("test", 900000)):
        held = list_episodes(tmp_path, split=split)
        assert held == [f"ep/{s}/{base:06d}" for s in SUBSTRATES]
        for key in held:
            h = read_episode(tmp_path, key).header
            assert h["split"] == split and h["seed"] in seed_range(split)
            assert h["length"] == 30 and h["policy"]["name"] == "mix"
    assert seed_range("train").stop <= seed_range("val").start
    assert seed_range("val").stop <= seed_range("test").start
    assert check_dataset(tmp_path, progress=False).problems == []


def test_episode_that_ends_early_keeps_its_real_length(tmp_path):
    summary = record(RecordConfig(str(tmp_path), ("coins",), 1, steps=5000, workers=1))
    ep = read_episode(tmp_path, "ep/coins/000000")
    assert ep.header["ended"] and 0 < ep.header["length"] < 5000  # coins ends on its own
    assert ep.frames.shape[0] == ep.header["length"] + 1 == summary.frames
    assert ep.actions.shape[0] == ep.rewards.shape[0] == ep.header["length"]
    assert check_dataset(tmp_path, progress=False).problems == []


def _count_episodes(path: Path) -> int:
    try:  # the writer may be creating the files right now
        env = lmdb.open(str(path), readonly=True, lock=False)
    except lmdb.Error:
        return 0
    try:
        with env.begin() as txn:
            return sum(1 for k in txn.cursor().iternext(values=False) if k.startswith(b"ep/"))
    finally:
        env.close()


@pytest.mark.slow  # two recordings, one killed and resumed
def test_kill_and_resume_equals_uninterrupted(tmp_path):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    args = ["--substrates", ",".join(SUBSTRATES), "--episodes-per-substrate", "5", "--steps", "30",
            "--workers", "2", "--seed", "11"]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, "-m", "training.record", "--out", str(killed), *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while _count_episodes(killed) < 1 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = _count_episodes(killed)
    assert 1 <= written < 10, f"the kill came too late or too early ({written} episodes written)"
    report = check_dataset(killed, progress=False)  # only missing episodes, nothing torn
    assert len(report.problems) == 10 - written
    assert all("missing" in p for p in report.problems), report.problems

    resumed = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"({written} already present)" in resumed.stdout
    record(RecordConfig(str(clean), SUBSTRATES, 5, 30, workers=2, seed=11))

    keys = list_episodes(killed)
    assert keys == list_episodes(clean) and len(keys) == len(set(keys)) == 10
    assert check_dataset(killed, progress=False).problems == []
    for key in keys:
        a, b = read_episode(killed, key), read_episode(clean, key)
        assert a.header == b.header  # seed, policy, map size, length, ...
        assert np.array_equal(a.actions, b.actions)
        assert a.frames.shape == b.frames.shape


def _killer(kills: int, after: float, stop: threading.Event) -> threading.Thread:
    """Kill each new worker process `after` seconds into its life, `kills` times. The parent hands
    a worker its task as it starts it, and no worker boots and plays an episode within 0.2 s, so
    each kill lands while the worker holds its task."""
    def run():
        done, seen = 0, {}
        while done < kills and not stop.is_set():
            for child in mp.active_children():
                seen.setdefault(child.pid, time.time())
                if child.is_alive() and time.time() - seen[child.pid] > after and child.exitcode is None:
                    os.kill(child.pid, signal.SIGKILL)
                    seen[child.pid] = float("inf")
                    done += 1
            time.sleep(0.01)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _task(substrate: str, number: int, steps: int) -> Task:
    spec = get_game(substrate)
    return Task(substrate, number, "train", 0, steps, "persistent_random", spec.roles, spec.action_set)


def test_dead_worker_is_retried_with_a_new_seed():
    stop = threading.Event()
    _killer(1, after=0.2, stop=stop)
    try:
        results = list(run_tasks([_task("coins", 0, 50)], workers=1))
    finally:
        stop.set()
    [(task, parts, reason)] = results
    assert reason == "" and task.attempt == 1
    assert parts["header"]["seed"] == episode_seed(0, "coins", "train", 0) + RETRY_STRIDE
    assert parts["header"]["attempt"] == 1 and parts["actions"].shape == (50, 2)


def test_substrate_fails_after_three_deaths_and_the_rest_goes_on():
    stop = threading.Event()
    _killer(3, after=0.2, stop=stop)
    tasks = [_task("coins", 0, 30), _task("coins", 1, 30), _task("collaborative_cooking__asymmetric", 0, 30)]
    try:
        results = list(run_tasks(tasks, workers=1))
    finally:
        stop.set()
    assert [(t.substrate, t.number, parts is None) for t, parts, _ in results] == [
        ("coins", 0, True), ("collaborative_cooking__asymmetric", 0, False)]
    assert "exit code -9" in results[0][2] and results[0][0].attempt == 2


def test_policies_cover_the_action_space_and_are_seeded():
    spec = get_game("clean_up")
    kinds = action_kinds(spec.action_set)
    assert kinds[:7] == ["idle", "forward", "step", "step", "step", "turn", "turn"]
    assert set(kinds[7:]) == {"use"}
    for name in ("persistent_random", "mix"):
        a = make_policy(name, spec.action_set, 7, seed=3)
        acts = np.stack([a.act() for _ in range(4000)])
        b = make_policy(name, spec.action_set, 7, seed=3)
        assert np.array_equal(acts, np.stack([b.act() for _ in range(4000)]))
        assert not np.array_equal(acts, np.stack([make_policy(name, spec.action_set, 7, 4).act()
                                                  for _ in range(4000)]))
        assert set(np.unique(acts)) == set(range(spec.num_actions))  # every action is seen
    # persistent random: holds 1..4 steps (mean 2.5), so a player changes action on about
    # 1/2.5 * 8/9 = 36% of steps (a new draw repeats the old action 1 time in 9)
    p = make_policy("persistent_random", spec.action_set, 200, seed=9)
    acts = np.stack([p.act() for _ in range(400)])
    assert 0.32 < (acts[1:] != acts[:-1]).mean() < 0.40
    mix = make_policy("mix", spec.action_set, 64, seed=2)
    behaviours = mix.describe()["behaviours"]
    assert {"explorer", "persistent_random"} == set(behaviours)
    explorers = [i for i, b in enumerate(behaviours) if b == "explorer"]
    acts = np.stack([mix.act() for _ in range(3000)])[:, explorers]
    share = np.bincount(acts.ravel(), minlength=spec.num_actions) / acts.size
    assert share[1] > 0.3  # explorers walk forward most
    with pytest.raises(ValueError, match="unknown policy"):
        make_policy("greedy", spec.action_set, 2, 0)
