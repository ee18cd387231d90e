"""The examples a newcomer runs first (examples/), end to end on the CPU with the small bundled
checkpoint: each exits cleanly and leaves what it says it writes."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, subprocess_env


def run_example(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "examples" / script), *args], cwd=cwd, env=subprocess_env(),
                          capture_output=True, text=True, timeout=900)


def test_random_dream_writes_its_gif(tmp_path):
    gif = tmp_path / "dream.gif"
    done = run_example("random_dream.py", "--steps", "3", "--checkpoint", "small", "--gif", str(gif), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert gif.stat().st_size > 0


def test_ppo_dream_trains_in_the_dream_and_scores_in_the_real_game(tmp_path):
    out = tmp_path / "ppo"
    done = run_example("ppo_dream.py", "--timesteps", "128", "--worlds", "1", "--episode", "4", "--eval-episodes", "1",
                       "--checkpoint", "small", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert out.with_suffix(".zip").is_file()
    assert "PPO trained in the dream:" in done.stdout and "random actions:" in done.stdout


def test_ppo_dream_among_rl_mix_bots_trains_and_scores_the_focal_player(tmp_path):
    out = tmp_path / "ppo"
    done = run_example("ppo_dream.py", "--background", "rl_mix", "--focal", "1", "--timesteps", "128", "--worlds", "1",
                       "--episode", "4", "--eval-episodes", "1", "--checkpoint", "small", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert out.with_suffix(".zip").is_file()
    assert "1 focal player(s) among rl_mix bots" in done.stdout and "PPO trained in the dream:" in done.stdout
