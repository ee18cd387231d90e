"""`state_space` on both envs: a Box of the global frame's shape, the space `state()` is in, one object
for the env's life, resized in place where a build's map differs in size; PettingZoo's `state_test`
passes on the real and the dream env."""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from gymnasium import spaces
from pettingzoo.test import state_test
from pettingzoo.utils.conversions import parallel_to_aec

from actionparty_env.env import parallel_env
from actionparty_env.games import get_game
from actionparty_env.grid import CELL, PlayerStates
from actionparty_env.real import RealParallelEnv, SeedWarning
from actionparty_env.simulator import StartState, StartStates

SUBSTRATE = "coins"


@pytest.fixture(scope="module")
def ck(coins_checkpoint) -> Path:
    return coins_checkpoint


def dream(ck, **kw):
    return parallel_env(SUBSTRATE, checkpoint=ck, device="cpu", **kw)


def check_space(env) -> None:
    space = env.state_space
    assert isinstance(space, spaces.Box) and space.dtype == np.uint8 and space is env.state_space
    before = space.shape
    game = get_game(env.substrate)
    assert before == (game.map_rows * CELL, game.map_cols * CELL, 3)  # the catalog's map until a reset
    for seed in (0, 1, 2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SeedWarning)  # the real engine does not replay a seed (test_seeds.py)
            env.reset(seed=seed)
        frame = env.state()
        assert env.state_space is space and space.shape == frame.shape and space.contains(frame)
        env.step({a: env.action_space(a).sample() for a in env.agents})
        assert space.contains(env.state())


def test_dream_state_space_and_pettingzoo_state_test(ck):
    check_space(dream(ck))
    state_test(parallel_to_aec(dream(ck)), dream(ck), num_cycles=5)


def test_dream_state_space_follows_a_build_of_another_size(ck, tmp_path):
    folder = Path(shutil.copytree(ck, tmp_path / "ck"))
    big = StartStates.load(folder).states[SUBSTRATE][0]
    rows, cols = big.frame.shape[0] // CELL, big.frame.shape[1] // CELL
    small = StartState(big.frame[:(rows - 2) * CELL, :(cols - 1) * CELL],
                       PlayerStates(np.array([[1, 1], [2, 2]]), big.facing, big.alive))
    StartStates({SUBSTRATE: [big, small]}).save(folder)
    shapes = set()
    for seed in range(8):  # one dream keeps its first reset's map size (one simulator); a fresh one per seed
        env = dream(folder)
        space = env.state_space
        wrapped = parallel_to_aec(env)  # keeps the object it saw at construction
        env.reset(seed=seed)
        shapes.add(env.state().shape)
        assert env.state_space is space is wrapped.state_space and space.contains(env.state())
        assert space.shape == env.state().shape
        env.reset(seed=seed + 1)
        assert space.contains(env.state())
    assert shapes == {big.frame.shape, small.frame.shape}


@pytest.mark.parametrize("substrate", ["coins", "clean_up"])
def test_real_state_space_and_pettingzoo_state_test(substrate):
    env = RealParallelEnv(substrate, max_cycles=20)
    check_space(env)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PettingZoo's style notes (e.g. a graphical state)
        state_test(parallel_to_aec(RealParallelEnv(substrate, max_cycles=20)), RealParallelEnv(substrate), num_cycles=5)


def test_state_space_before_state_raises_nothing_and_state_needs_a_reset(ck):
    env = dream(ck)
    assert env.state_space.shape == (17 * CELL, 17 * CELL, 3)
    with pytest.raises(RuntimeError, match="reset"):
        env.state()
