"""Closed-loop rollouts of recorded episodes: start from the real first frame and states, feed only
the recorded actions, and let the model's own frames and states feed back. Used for the training
samples and the benchmarks (closed_loop.py, fidelity.py)."""
from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch

from actionparty_env.grid import PlayerStates
from actionparty_env.model.network import WorldModel
from actionparty_env.model.sampler import DreamSimulator
from training.store import Episode, list_episodes, read_episode


@torch.no_grad()
def closed_loop(model: WorldModel, episodes: list[Episode], steps: int, device="cpu", sampling_steps: int = 1,
                temperature: float = 0.0, consistent_sprites: bool = True) -> dict[str, np.ndarray]:
    """Dream `steps` steps of B recorded episodes of one substrate and map size at once, from their
    first frame. Returns arrays [B, steps+1, ...] (index 0 is the real start): frames, cells, facing,
    alive, and rewards [B, steps, N]. `consistent_sprites`: see DreamSimulator."""
    substrate = episodes[0].header["substrate"]
    steps = min([steps] + [len(e.actions) for e in episodes])
    n = episodes[0].actions.shape[1]
    sim = DreamSimulator(model, substrate, n, len(episodes), device, sampling_steps=sampling_steps,
                         temperature=temperature, consistent_sprites=consistent_sprites)
    first = {k: np.stack([getattr(e, k)[0] for e in episodes]) for k in ("frames", "cells", "facing", "alive")}
    sim.reset(first["frames"], PlayerStates(first["cells"], first["facing"], first["alive"]))
    out = {k: [v] for k, v in first.items()}
    out["rewards"] = []
    actions = torch.as_tensor(np.stack([e.actions[:steps] for e in episodes]).astype(np.int64), device=device)
    for t in range(steps):
        res = sim.step(actions[:, t])
        for k in ("frames", "cells", "facing", "alive", "rewards"):
            out[k].append(getattr(res, k).cpu().numpy())
    return {k: np.stack(v, axis=1) if v else np.zeros((len(episodes), 0, n), np.float32) for k, v in out.items()}


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
        if episode.header["substrate"] not in model.games:
            continue
        dream = closed_loop(model, [episode], steps, device)["frames"][0]
        path = Path(f"{prefix}_{episode.header['substrate']}.gif")
        iio.imwrite(path, side_by_side(episode.frames[: len(dream)], dream), duration=120, loop=0)
        paths.append(path)
    return paths
