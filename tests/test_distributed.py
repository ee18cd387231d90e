"""Data-parallel training (issue 7, CPU part): the real entry point under
`torchrun --standalone --nproc_per_node=2 -m training.train` with the gloo backend. Both ranks hold
identical weights after training (the trainer records every rank's weight digest at each checkpoint),
and a run whose processes are all SIGKILLed resumes under torchrun and repeats the uninterrupted run.
(`python -m torch.distributed.run` is the `torchrun` script, independent of PATH.)"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, subprocess_env

pytestmark = pytest.mark.slow  # torchrun training runs

STEPS = 12
SETTINGS = [f"max_steps={STEPS}", "ckpt_every=4", "log_every=1", "eval_every=1000", "sample_gifs=0"]


def torchrun(data: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "-m", "training.train", "--config", str(ROOT / "training/configs/tiny.yaml"),
            "--set", f"data={data}", f"out={out}", *SETTINGS]


def run(command: list[str]) -> str:
    proc = subprocess.run(command, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def state(out: Path) -> dict:
    return torch.load(out / "train_state.pt", map_location="cpu", weights_only=False)


def digest_of(model_state: dict) -> str:
    """The trainer's digest (training.train.weight_digests) of a saved state_dict."""
    h = hashlib.sha256()
    for v in model_state.values():
        h.update(v.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def losses_by_step(out: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


@pytest.fixture(scope="module")
def data(tiny_dataset) -> Path:
    return tiny_dataset  # the session's recorded dataset (tests/conftest.py)


@pytest.fixture(scope="module")
def two_rank_run(data, tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("ddp")
    return out, run(torchrun(data, out))


def test_both_ranks_hold_identical_weights(two_rank_run):
    out, log = two_rank_run
    assert "2 process(es)" in log
    saved = state(out)
    assert saved["step"] == STEPS
    digests = saved["weights_sha256"]
    assert len(digests) == 2 and digests[0] == digests[1], digests
    assert digests[0] == digest_of(saved["model"])  # rank 0's digest is the saved weights'
    assert sorted(losses_by_step(out)) == list(range(1, STEPS + 1))
    assert (out / "export" / "config.json").is_file()


def _children(pid: int) -> list[int]:
    return [int(c) for task in Path(f"/proc/{pid}/task").iterdir()
            for c in (task / "children").read_text().split()]


def test_killed_torchrun_resumes_and_repeats_the_uninterrupted_run(data, two_rank_run, tmp_path):
    reference, _ = two_rank_run
    out = tmp_path / "killed"
    proc = subprocess.Popen(torchrun(data, out), cwd=ROOT, env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        while not (out / "train_state.pt").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
        # A lost machine: the workers and torchrun die at once (killing torchrun alone orphans its workers).
        for pid in _children(proc.pid) + [proc.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    finally:
        proc.kill()
        proc.wait()
    killed_at = state(out)["step"]
    assert 4 <= killed_at < STEPS and not (out / "export").exists()

    log = run(torchrun(data, out))
    assert f"at step {killed_at}" in log
    resumed, expected = state(out), state(reference)
    assert resumed["step"] == STEPS
    assert resumed["weights_sha256"][0] == resumed["weights_sha256"][1] == expected["weights_sha256"][0]
    assert losses_by_step(out) == losses_by_step(reference)
