"""Closed-loop rollouts of recorded episodes: start from the real first frame and states, feed only
the recorded actions, and let the model's own frames and states feed back. Used for the training
samples, the checkpoint's evaluation and the benchmarks."""
from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch

from actionparty_env.model.network import WorldModel
from actionparty_env.model.sampler import DreamSimulator
from training.dataset import list_episodes, read_episode


@torch.no_grad()
def closed_loop(model: WorldModel, episode: dict, steps: int, device="cpu", sampling_steps: int = 2,
                temperature: float = 0.0, start: int = 0) -> dict[str, np.ndarray]:
    """Dream `steps` steps of a recorded episode from frame `start`. Returns arrays with a leading time
    axis of steps+1 (index 0 is the real start): frames, cells, facing, alive, and rewards [steps, N]."""
    header = episode["header"]
    steps = min(steps, len(episode["actions"]) - start)
    n = episode["actions"].shape[1]
    sim = DreamSimulator(model, header["substrate"], n, 1, device, sampling_steps=sampling_steps,
                         temperature=temperature)
    sim.reset(episode["frames"][start][None], episode["cells"][start][None], episode["facing"][start][None],
              episode["alive"][start][None])
    frames, cells, facing, alive, rewards = [episode["frames"][start]], [episode["cells"][start]], \
        [episode["facing"][start]], [episode["alive"][start]], []
    for t in range(start, start + steps):
        out = sim.step(torch.as_tensor(episode["actions"][t][None].astype(np.int64)))
        frames.append(out.frames[0].cpu().numpy())
        cells.append(out.cells[0].cpu().numpy())
        facing.append(out.facing[0].cpu().numpy())
        alive.append(out.alive[0].cpu().numpy())
        rewards.append(out.rewards[0].cpu().numpy())
    return {"frames": np.stack(frames), "cells": np.stack(cells), "facing": np.stack(facing),
            "alive": np.stack(alive), "rewards": np.stack(rewards) if rewards else np.zeros((0, n), np.float32)}


def side_by_side(real: np.ndarray, dream: np.ndarray, scale: int = 2) -> np.ndarray:
    """[T,H,W,3] real | dream with a white bar between, upscaled for viewing."""
    t = min(len(real), len(dream))
    bar = np.full((t, real.shape[1], 4, 3), 255, np.uint8)
    both = np.concatenate([real[:t], bar, dream[:t]], axis=2)
    return both.repeat(scale, axis=1).repeat(scale, axis=2)


def rollout_gif(model: WorldModel, data: str, prefix: Path, count: int = 2, steps: int = 30, device="cpu",
                split: str = "val") -> list[Path]:
    """Write `count` real | dream GIFs of held-out episodes (spread over substrates)."""
    keys = list_episodes(data, split=split)
    by_substrate: dict[str, str] = {}
    for key in keys:
        by_substrate.setdefault(key.split("/")[1], key)
    paths = []
    for key in list(by_substrate.values())[:: max(1, len(by_substrate) // max(count, 1))][:count]:
        episode = read_episode(data, key)
        if episode["header"]["substrate"] not in model.games:
            continue
        dream = closed_loop(model, episode, steps, device)
        path = Path(f"{prefix}_{episode['header']['substrate']}.gif")
        iio.imwrite(path, side_by_side(episode["frames"][: len(dream["frames"])], dream["frames"]), duration=120, loop=0)
        paths.append(path)
    return paths
