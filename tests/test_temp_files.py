"""The test run leaves nothing in the system temp dir: SB3's logger folders and torch.compile's caches go to
pytest's tmp dir."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import gymnasium
import torch
from stable_baselines3 import PPO


def sb3_folders() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("SB3-*"))


def test_sb3_logger_folders_go_to_the_pytest_tmp_dir(tmp_path_factory):
    before = sb3_folders()
    model = PPO("MlpPolicy", gymnasium.make("CartPole-v1"), n_steps=16, batch_size=16, n_epochs=1, device="cpu")
    model.learn(total_timesteps=16)
    base = tmp_path_factory.getbasetemp().resolve()
    assert base in Path(model.logger.get_dir()).resolve().parents
    assert sb3_folders() == before


def test_compile_caches_go_to_the_pytest_tmp_dir(tmp_path_factory):
    before = set(Path(tempfile.gettempdir()).glob("torchinductor_*"))
    torch.compile(lambda x: x * 2 + 1)(torch.ones(3))  # the compiled layers' (tests/test_step_speed.py) path
    cache = Path(os.environ["TORCHINDUCTOR_CACHE_DIR"]).resolve()
    assert tmp_path_factory.getbasetemp().resolve() in cache.parents
    assert any(cache.rglob("*")), "Inductor wrote nothing where it was told to"
    assert set(Path(tempfile.gettempdir()).glob("torchinductor_*")) == before
