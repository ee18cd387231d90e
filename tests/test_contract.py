"""One contract for the dream and the real env, checked in one place (actionparty_env/players.py): the
same player counts (the catalog's, measured on the real engine), the same seed range and types, the
same messages; the vector envs check seeds up front. A property-based test throws random bad actions,
agents and seeds at both envs: each is a ValueError and leaves the env as it was."""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actionparty_env.env import parallel_env
from actionparty_env.games import get_game, load_catalog
from actionparty_env.players import MAX_SEED, check_num_players, check_seed
from actionparty_env.real import RealParallelEnv, SeedWarning
from actionparty_env.vector import DreamVecEnv

SUBSTRATE = "coins"
ARENA = "prisoners_dilemma_in_the_matrix__arena"


@pytest.fixture(scope="module")
def ck(coins_checkpoint) -> Path:
    return coins_checkpoint


def error(call) -> str:
    with pytest.raises(ValueError) as e:
        call()
    return str(e.value)


# ------------------------------------------------------------------------------------ player counts
def test_the_catalog_knows_every_substrates_player_counts():
    games = load_catalog()
    assert all(g.player_counts and g.num_players in g.player_counts for g in games.values())
    assert games["coins"].player_counts == (2,) and games["hidden_agenda"].player_counts == (5,)
    assert games["paintball__king_of_the_hill"].player_counts == tuple(range(2, 17, 2))
    assert 1 in games["clean_up"].player_counts


@pytest.mark.parametrize("substrate", ["coins", "clean_up", "hidden_agenda", "paintball__king_of_the_hill", ARENA])
def test_dream_and_real_take_the_same_player_counts_with_the_same_messages(substrate):
    counts = get_game(substrate).player_counts
    for n in [*range(0, 18), 1.0, "2", True, np.int64(2), None]:
        real = lambda: RealParallelEnv(substrate, num_players=n)  # noqa: E731
        dream = lambda: parallel_env(substrate, num_players=n, device="cpu", start="real")  # noqa: E731
        ok = n is None or (not isinstance(n, (bool, float, str)) and int(n) in counts)
        if ok:
            assert len(real().possible_agents) == len(dream().possible_agents)
        else:
            assert error(real) == error(dream)
    assert error(lambda: RealParallelEnv("coins", num_players=1)) == \
        "coins does not take 1 player: it takes 2 (default 2)"  # the dream used to accept it


# ---------------------------------------------------------------------------------------- seeds
BAD_SEEDS = [-1, MAX_SEED + 1, 2**40, 1.5, 0.0, "3", True, np.float32(2), [1], -(2**63)]


def test_dream_and_real_reject_the_same_seeds_with_the_same_message(ck):
    dream, real = parallel_env(SUBSTRATE, checkpoint=ck, device="cpu"), RealParallelEnv(SUBSTRATE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a bad seed is only a ValueError (no SeedWarning first)
        for seed in BAD_SEEDS:
            message = error(lambda: real.reset(seed=seed))
            assert message == error(lambda: dream.reset(seed=seed))
            assert message == f"seed must be an int in 0..{MAX_SEED} or None, got {seed!r}"
    for seed in (0, MAX_SEED, np.int64(5), np.uint32(7)):
        assert check_seed(seed) == int(seed)
        dream.reset(seed=seed)  # the largest seed is fine in both (the real env no longer reduces it)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SeedWarning)
        real.reset(seed=MAX_SEED)
    assert real.state().shape == real.state_space.shape


def test_vector_env_seed_is_checked_up_front(ck):
    env = DreamVecEnv(SUBSTRATE, 2, checkpoint=ck, device="cpu")
    for seed in (-1, 1.5, "1", MAX_SEED):  # the last: world 1 would get MAX_SEED + 2
        with pytest.raises(ValueError, match=r"seed must be an int in 0\.\.\d+ or None"):
            env.seed(seed)
    assert env.seed(5) == [5, 6, 7, 8] and env.reset().shape[0] == 4 and list(env.episode_seeds) == [5, 7]
    assert all(0 <= s <= MAX_SEED for s in env.seed(None))
    with pytest.raises(ValueError, match="seed must be an int"):
        DreamVecEnv(SUBSTRATE, 2, checkpoint=ck, device="cpu", seed=-1)


# ------------------------------------------------------------- property-based: bad input changes nothing
def snapshot(env) -> tuple:
    """What an env shows of its state: the global frame, agents, cycle count and the players' states."""
    last = env.dream.last if hasattr(env, "dream") else env._last
    return env.state().copy(), list(env.agents), env.num_cycles, last.cells.tolist(), last.facing.tolist()


def bad_value():
    return st.one_of(st.integers(max_value=-1), st.integers(min_value=8, max_value=2**70), st.floats(),
                     st.text(max_size=3), st.none(), st.booleans(), st.lists(st.integers(0, 3), max_size=2))


@st.composite
def bad_actions(draw, agents: list[str], num_actions: int):
    """A dict of actions with at least one thing wrong: a missing agent, an unknown agent, or a bad value."""
    good = {a: draw(st.integers(0, num_actions - 1)) for a in agents}
    kind = draw(st.sampled_from(["missing", "unknown", "value"]))
    if kind == "missing":
        del good[draw(st.sampled_from(agents))]
    elif kind == "unknown":
        good[draw(st.one_of(st.text(max_size=8).filter(lambda s: s not in agents), st.integers(),
                            st.sampled_from(["player_2", "player_-1", "Player_0"])))] = 0
    else:
        value = draw(bad_value())
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < num_actions:
            value = -1
        good[draw(st.sampled_from(agents))] = value
    return good


def bad_agent():
    return st.one_of(st.text(max_size=10).filter(lambda s: not re.fullmatch(r"player_[01]", s)), st.integers(),
                     st.none(), st.sampled_from(["player_2", "player_00", " player_0"]))


def bad_seed():
    return st.one_of(st.integers(max_value=-1), st.integers(min_value=MAX_SEED + 1), st.floats(), st.text(max_size=4),
                     st.booleans(), st.lists(st.integers(0, 5), max_size=2))


@pytest.mark.parametrize("kind", ["dream", "real"])
def test_random_bad_input_is_a_value_error_and_changes_nothing(ck, kind):
    make = (lambda: parallel_env(SUBSTRATE, checkpoint=ck, device="cpu", temperature=1.0)) if kind == "dream" \
        else (lambda: RealParallelEnv(SUBSTRATE))
    env, twin = make(), make()
    for e in (env, twin):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SeedWarning)
            e.reset(seed=3)
        e.step({"player_0": 1, "player_1": 2})
    n = env.action_space("player_0").n

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(data=st.data())
    def throw(data):
        before = snapshot(env)
        what = data.draw(st.sampled_from(["step", "reset", "space"]))
        with pytest.raises(ValueError):
            if what == "step":
                env.step(data.draw(bad_actions(list(env.agents), n)))
            elif what == "reset":
                env.reset(seed=data.draw(bad_seed()))
            else:
                getattr(env, data.draw(st.sampled_from(["action_space", "observation_space"])))(data.draw(bad_agent()))
        after = snapshot(env)
        assert np.array_equal(before[0], after[0]) and before[1:] == after[1:]

    throw()
    if kind == "dream":  # nothing moved underneath: the next good step is the twin's, which saw no bad input
        obs, rewards, *_, infos = env.step({"player_0": 3, "player_1": 4})
        obs2, rewards2, *_, infos2 = twin.step({"player_0": 3, "player_1": 4})
        assert all(np.array_equal(obs[a], obs2[a]) for a in obs) and rewards == rewards2 and infos == infos2
        assert np.array_equal(env.state(), twin.state())
    # (The real engine does not replay a seed (test_seeds.py), so there the snapshots above are the check.)


def test_one_place_checks_both(monkeypatch):
    """The envs call players.check_num_players / check_seed: changing the contract there changes both."""
    import actionparty_env.env as dream_module
    import actionparty_env.real as real_module

    assert dream_module.check_num_players is check_num_players is real_module.check_num_players
    calls = []
    monkeypatch.setattr(real_module, "check_num_players", lambda g, n: calls.append(n) or 2)
    monkeypatch.setattr(dream_module, "check_num_players", lambda g, n: calls.append(n) or 2)
    RealParallelEnv(SUBSTRATE, num_players=99)
    parallel_env(SUBSTRATE, num_players=98, device="cpu", start="real")
    assert calls == [99, 98]
