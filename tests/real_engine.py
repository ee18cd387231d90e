"""The installed Melting Pot, for tests that check a rule against the real engine: a substrate's config,
and random-action episodes."""
from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np


def substrate_config(substrate: str) -> ModuleType:
    """A substrate's config module (its constants, prefabs and `build`), imported without TensorFlow."""
    from actionparty_env.meltingpot_import import SUBSTRATES

    assert substrate in SUBSTRATES
    return importlib.import_module(f"meltingpot.configs.substrates.{substrate}")


def random_real_episode(substrate: str, seed: int, steps: int):
    """A random-action real episode: frames (T+1 of them), player cells [T+1, N, 2], alive [T+1, N] and
    rewards [T, N]."""
    from actionparty_env.real import MeltingPotEngine

    engine = MeltingPotEngine()
    step = engine.build(substrate, seed=seed)
    rng = np.random.default_rng(seed)
    frames, cells, alive, rewards = [step.frame], [step.players.cells.copy()], [step.players.alive.copy()], []
    for _ in range(steps):
        step = engine.step(rng.integers(0, engine.num_actions, engine.num_players))
        frames.append(step.frame)
        cells.append(step.players.cells.copy())
        alive.append(step.players.alive.copy())
        rewards.append(step.rewards.copy())
    return frames, np.stack(cells), np.stack(alive), np.stack(rewards)


def real_steps(substrate: str, seed: int, steps: int, favoured: int, share: float):
    """Random actions with the action `favoured` (an index) taken by a `share` of the players: per step
    the actions [N], the players' (cells, facing, alive) before and after (torch, [1, N, ...]) and the
    frame and the rewards [N] after; it ends with the episode."""
    import torch

    from actionparty_env.real import MeltingPotEngine

    engine = MeltingPotEngine()
    step = engine.build(substrate, seed=seed)
    rng = np.random.default_rng(seed)
    n = engine.num_players
    for _ in range(steps):
        before = [torch.from_numpy(x.copy())[None] for x in (step.players.cells, step.players.facing, step.players.alive)]
        actions = rng.integers(0, engine.num_actions, n)
        actions[rng.random(n) < share] = favoured
        step = engine.step(actions)
        after = [torch.from_numpy(x.copy())[None] for x in (step.players.cells, step.players.facing, step.players.alive)]
        yield actions, before, after, step.frame, step.rewards.copy()
        if step.done:
            return
