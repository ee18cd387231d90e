"""Seeds: the dream replays an episode from its seed (PettingZoo's parallel_seed_test and state_test on
coins, commons_harvest__open, clean_up and an arena game, bundled checkpoint); the real Melting Pot
replays only the substrates the catalog measured as replaying (`seed_replays`, python -m
training.catalog --seed-replays), and for the others the first seeded reset says so (SeedWarning).
Multi-step replay over all 49 real substrates checks the catalog's verdicts (slow)."""
from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
from pettingzoo.test import parallel_seed_test, state_test
from pettingzoo.utils.conversions import parallel_to_aec

from actionparty_env.env import parallel_env
from actionparty_env.games import get_game, load_catalog
from actionparty_env.real import RealParallelEnv, SeedWarning

FOUR = ["coins", "commons_harvest__open", "clean_up", "prisoners_dilemma_in_the_matrix__arena"]
SLOW_BUT_COINS = [s if s == "coins" else pytest.param(s, marks=pytest.mark.slow) for s in FOUR]


def dream(substrate: str, **kw):
    return parallel_env(substrate, device="cpu", temperature=1.0, **kw)  # sampling: the seed must matter


@pytest.mark.parametrize("substrate", SLOW_BUT_COINS)
def test_dream_passes_pettingzoos_seed_and_state_tests(substrate):
    parallel_seed_test(functools.partial(dream, substrate, max_cycles=4), num_cycles=4)
    state_test(parallel_to_aec(dream(substrate, max_cycles=4)), dream(substrate), num_cycles=3)


def test_the_catalog_says_which_real_substrates_replay():
    games = load_catalog()
    assert all(isinstance(g.seed_replays, bool) for g in games.values())
    assert get_game("coins").seed_replays is False  # which player gets which spawn changes per build


def test_a_seeded_reset_of_a_substrate_that_does_not_replay_says_so_once():
    env = RealParallelEnv("coins", max_cycles=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env.reset()  # no seed asked for: nothing to say
    with pytest.warns(SeedWarning, match="coins: the real Melting Pot does not replay an episode from its seed"):
        env.reset(seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env.reset(seed=2)  # said once per env


def replays(substrate: str, steps: int = 20, seed: int = 7) -> bool:
    """Two real envs of one process, the same seed and actions: the same frames, states and rewards?"""
    runs = []
    for _ in range(2):
        env = RealParallelEnv(substrate, max_cycles=steps)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SeedWarning)
            obs, infos = env.reset(seed=seed)
        rng = np.random.default_rng(seed)
        trace = [env.state().tobytes(), repr(infos)]
        while env.agents:
            obs, rewards, *_, infos = env.step({a: int(rng.integers(env.action_space(a).n)) for a in env.agents})
            trace += [env.state().tobytes(), repr(rewards), repr(infos)]
        runs.append(trace)
        env.close()
    return runs[0] == runs[1]


@pytest.mark.parametrize("substrate", FOUR)
def test_real_env_pettingzoo_seed_test_where_the_engine_replays(substrate):
    if get_game(substrate).seed_replays:
        parallel_seed_test(functools.partial(RealParallelEnv, substrate, max_cycles=20), num_cycles=20)
    else:  # a named exception (README): the first seeded reset says so
        with pytest.warns(SeedWarning, match=substrate):
            RealParallelEnv(substrate, max_cycles=2).reset(seed=0)


@pytest.mark.parametrize("substrate", ["commons_harvest__open", "prisoners_dilemma_in_the_matrix__arena"])
def test_real_env_state_test(substrate):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SeedWarning and PettingZoo's style notes
        state_test(parallel_to_aec(RealParallelEnv(substrate, max_cycles=5)), RealParallelEnv(substrate),
                   num_cycles=3)


@pytest.mark.slow  # every substrate, two builds of 20 steps each (chemistry: ~10 s per build)
@pytest.mark.parametrize("substrate", sorted(load_catalog()))
def test_multi_step_replay_matches_the_catalog(substrate):
    game = get_game(substrate)
    if game.seed_replays:
        assert replays(substrate), f"{substrate}: the catalog says it replays, two runs differ"
    else:
        # Two runs may agree by chance (the catalog took 5 builds); the env must say so when seeded.
        with pytest.warns(SeedWarning):
            RealParallelEnv(substrate, max_cycles=2).reset(seed=0)
