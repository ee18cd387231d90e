"""DreamParallelEnv on a tiny randomly initialised world model (the real model code), started from
real Melting Pot reset states: PettingZoo's API, seed and render tests, multi-step determinism,
closed-loop stepping, bad input (message and unchanged state), start states and the baseline."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from pettingzoo.test import parallel_api_test, parallel_seed_test, render_test
from pettingzoo.utils.conversions import parallel_to_aec

from actionparty_env.env import DreamParallelEnv, parallel_env
from actionparty_env.games import get_game
from actionparty_env.grid import CELL, PlayerStates
from actionparty_env.real import RealParallelEnv
from actionparty_env.simulator import CopyLastFrameSimulator, StartState, StartStates
from actionparty_env.views import ViewTable
from tests.conftest import DREAM_START_SEEDS as START_SEEDS, DREAM_SUBSTRATE as SUBSTRATE, REAL_VIEWS_FILE

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def checkpoint(dream_checkpoint) -> Path:
    return dream_checkpoint  # tests/conftest.py: a tiny random model with real start states and a view table


def dream(checkpoint, **kw) -> DreamParallelEnv:
    return parallel_env(SUBSTRATE, checkpoint=checkpoint, device="cpu", **kw)


def test_pettingzoo_parallel_api(checkpoint):
    env = dream(checkpoint, temperature=1.0)
    parallel_api_test(env, num_cycles=12)
    assert env.possible_agents == ["player_0", "player_1"]


def test_pettingzoo_seed_test(checkpoint):
    parallel_seed_test(functools.partial(dream, checkpoint, temperature=1.0), num_cycles=5)


def test_pettingzoo_render_test(checkpoint, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")  # "human" draws off-screen (render.Window allows an explicit backend)
    render_test(lambda render_mode=None: parallel_to_aec(dream(checkpoint, render_mode=render_mode)))
    env = dream(checkpoint, render_mode="rgb_array")
    env.reset(seed=1)
    assert np.array_equal(env.render(), env.state()) and env.render().shape == (17 * CELL, 17 * CELL, 3)


def test_spaces_match_the_real_env(checkpoint):
    env, real = dream(checkpoint), RealParallelEnv(SUBSTRATE)
    assert env.possible_agents == real.possible_agents
    for a in env.possible_agents:
        assert env.observation_space(a) == real.observation_space(a)
        assert env.action_space(a) == real.action_space(a)
        assert env.observation_space(a) is env.observation_space(a)


def rollout(env, seed, steps, actions_seed=0):
    obs, infos = env.reset(seed=seed)
    rng = np.random.default_rng(actions_seed)
    frames, all_obs, rewards, all_infos = [env.state()], [obs], [], [infos]
    for _ in range(steps):
        obs, rew, term, trunc, infos = env.step({a: int(rng.integers(env.action_space(a).n)) for a in env.agents})
        frames.append(env.state()), all_obs.append(obs), rewards.append(rew), all_infos.append(infos)
    return frames, all_obs, rewards, all_infos


def test_same_seed_and_actions_give_the_same_20_steps(checkpoint):
    a = rollout(dream(checkpoint, temperature=1.0), seed=5, steps=20)
    b = rollout(dream(checkpoint, temperature=1.0), seed=5, steps=20)
    for fa, fb in zip(a[0], b[0]):
        assert np.array_equal(fa, fb)
    for oa, ob in zip(a[1], b[1]):
        assert all(np.array_equal(oa[k], ob[k]) for k in oa)
    assert a[2] == b[2] and a[3] == b[3]
    # The sampler's randomness is seeded by reset(seed): another seed draws other frames.
    c = rollout(dream(checkpoint, temperature=1.0), seed=6, steps=20)
    assert any(not np.array_equal(fa, fc) for fa, fc in zip(a[0][1:], c[0][1:]))


def test_closed_loop_outputs_are_consistent(checkpoint):
    env = dream(checkpoint, max_cycles=6, temperature=1.0)
    frames, obs, rewards, infos = rollout(env, seed=3, steps=6)
    for t in range(1, 7):
        assert frames[t].shape == frames[0].shape and frames[t].dtype == np.uint8
        for a in env.possible_agents:
            assert obs[t][a].shape == (88, 88, 3) and obs[t][a].dtype == np.uint8
            info = infos[t][a]
            # a categorical reward head adds the model's expected reward beside the drawn one
            assert set(info) - {"expected_reward"} == {"cell", "facing", "alive"} and 0 <= info["facing"] <= 3
            assert isinstance(info.get("expected_reward", 0.0), float)
            assert 0 <= info["cell"][0] < frames[t].shape[0] // CELL and 0 <= info["cell"][1] < frames[t].shape[1] // CELL
            assert (obs[t][a].any()) or not info["alive"]  # a live player's view shows the map
            assert isinstance(rewards[t - 1][a], float)
    assert env.agents == [] and env.num_cycles == 6  # max_cycles truncated every agent together
    with pytest.raises(RuntimeError, match="reset"):
        env.step({"player_0": 0, "player_1": 0})


def test_reset_views_equal_the_real_engines_views(checkpoint):
    """At reset the dream shows a real state: its crops (with the view table) are the real views."""
    env = dream(checkpoint)
    starts = StartStates.load(checkpoint).states[SUBSTRATE]
    for seed in range(10):
        obs, infos = env.reset(seed=seed)
        j = [k for k, s in enumerate(starts) if np.array_equal(s.frame, env.state()) and
             tuple(s.cells[0]) == infos["player_0"]["cell"]][0]
        with np.load(checkpoint / REAL_VIEWS_FILE) as views:
            real = views[str(START_SEEDS[j])]
        share = np.mean([(obs[f"player_{i}"] == real[i]).all(-1).mean() for i in range(2)])
        assert share >= 0.99, share


def test_start_real_resets_from_melting_pot(checkpoint):
    env = dream(checkpoint, start="real")
    obs, infos = env.reset(seed=21)
    real_obs, real_infos = RealParallelEnv(SUBSTRATE).reset(seed=21)
    # Lua may hand the two spawn points out in either order (shared/MELTINGPOT.md): match by cell.
    by_cell = {tuple(i["cell"]): a for a, i in real_infos.items()}
    assert set(by_cell) == {tuple(i["cell"]) for i in infos.values()}
    for a in obs:
        share = (obs[a] == real_obs[by_cell[infos[a]["cell"]]]).all(-1).mean()
        assert share >= 0.95, share  # the avatars' colours follow the spawn order


def snapshot(env):
    return env.state().copy(), env.num_cycles, list(env.agents), env.dream.last.cells.clone()


@pytest.mark.parametrize("actions, match", [
    ({"player_0": 0, "player_1": 0, "player_7": 0}, "unknown agent"),
    ({"player_0": 0}, "missing action"),
    ({"player_0": 0, "player_1": 7}, r"in \[0, 7\)"),
    ({"player_0": -1, "player_1": 0}, r"in \[0, 7\)"),
    ({"player_0": 1.0, "player_1": 0}, "must be an int"),
    ({"player_0": "1", "player_1": 0}, "must be an int"),
    ({"player_0": True, "player_1": 0}, "must be an int"),
    ([0, 0], "must be a dict"),
])
def test_bad_actions_are_value_errors_and_change_nothing(checkpoint, actions, match):
    env = dream(checkpoint, temperature=1.0)
    env.reset(seed=4)
    before = snapshot(env)
    with pytest.raises(ValueError, match=match):
        env.step(actions)
    after = snapshot(env)
    assert np.array_equal(before[0], after[0]) and before[1:3] == after[1:3] and torch.equal(before[3], after[3])
    # The simulator did not advance: the next step is the first step of a fresh run.
    obs, *_ = env.step({"player_0": 1, "player_1": 2})
    fresh = dream(checkpoint, temperature=1.0)
    fresh.reset(seed=4)
    fresh_obs, *_ = fresh.step({"player_0": 1, "player_1": 2})
    assert all(np.array_equal(obs[a], fresh_obs[a]) for a in obs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(substrate="coinz"), "unknown substrate 'coinz'; did you mean coins"),
    (dict(substrate="clean_up"), "does not know the substrate 'clean_up'"),
    (dict(num_players=3), r"coins does not take 3 players: it takes 2 \(default 2\)"),  # the real env's message
    (dict(num_players=0), r"coins does not take 0 players"),
    (dict(max_cycles=0), "max_cycles"),
    (dict(render_mode="ansi"), "render_mode"),
    (dict(start="random"), "start must be"),
    (dict(sampling_steps=0), "sampling_steps"),
    (dict(temperature=-1.0), "temperature"),
    (dict(device="tpu9"), "device"),
])
def test_bad_construction_is_a_value_error(checkpoint, kwargs, match):
    kwargs = {"substrate": SUBSTRATE, "checkpoint": checkpoint, "device": "cpu", **kwargs}
    with pytest.raises(ValueError, match=match):
        parallel_env(kwargs.pop("substrate"), **kwargs)


def test_missing_or_broken_checkpoint_is_a_value_error(tmp_path, checkpoint):
    with pytest.raises(ValueError, match="config.json"):
        parallel_env(SUBSTRATE, checkpoint=tmp_path / "nothing", device="cpu")
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text((checkpoint / "config.json").read_text())
    with pytest.raises(ValueError, match="model-00001-of-00001.safetensors: missing"):  # checked before use
        parallel_env(SUBSTRATE, checkpoint=bare, device="cpu")


def test_bad_seed_is_a_value_error(checkpoint):
    env = dream(checkpoint)
    for seed in (-1, 1.5, "3", True):
        with pytest.raises(ValueError, match="seed"):
            env.reset(seed=seed)


def copy_last(checkpoint, **kw) -> DreamParallelEnv:
    return dream(checkpoint, simulator=functools.partial(CopyLastFrameSimulator, get_game(SUBSTRATE)), **kw)


def test_copy_last_frame_baseline_never_changes(checkpoint):
    env = copy_last(checkpoint)
    obs0, infos0 = env.reset(seed=2)
    frame0 = env.state().copy()
    for _ in range(5):
        obs, rew, term, trunc, infos = env.step({a: 1 for a in env.agents})
        assert np.array_equal(env.state(), frame0) and infos == infos0
        assert all(np.array_equal(obs[a], obs0[a]) for a in obs) and set(rew.values()) == {0.0}


def test_dead_players_see_black(checkpoint, tmp_path):
    start = StartStates.load(checkpoint).states[SUBSTRATE][0]
    dead = StartState(start.frame, PlayerStates(start.cells, start.facing, np.array([True, False])))
    StartStates({SUBSTRATE: [dead]}).save(tmp_path)
    env = parallel_env(SUBSTRATE, checkpoint=tmp_path, device="cpu",
                       simulator=CopyLastFrameSimulator(get_game(SUBSTRATE), 2))
    obs, infos = env.reset(seed=0)
    assert obs["player_0"].any() and not obs["player_1"].any() and infos["player_1"]["alive"] is False


def test_fewer_players(checkpoint):
    with pytest.raises(ValueError, match="coins does not take 1 player: it takes 2"):  # as the real env says
        dream(checkpoint, num_players=1)
    with pytest.warns(UserWarning, match="first 1"):  # where a game takes fewer: the first of a larger state
        start = StartStates.load(checkpoint).pick(SUBSTRATE, 0, 1)
    assert start.num_players == 1 and start.frame.shape == (17 * CELL, 17 * CELL, 3)


def test_start_states_roundtrip_and_pick(tmp_path, checkpoint):
    states = StartStates.load(checkpoint)
    assert states.substrates() == [SUBSTRATE] and len(states.states[SUBSTRATE]) == len(START_SEEDS)
    states.save(tmp_path)
    again = StartStates.load(tmp_path)
    for a, b in zip(states.states[SUBSTRATE], again.states[SUBSTRATE]):
        assert all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("frame", "cells", "facing", "alive"))
    assert np.array_equal(states.pick(SUBSTRATE, 7, 2).frame, states.pick(SUBSTRATE, 7, 2).frame)
    assert len({states.pick(SUBSTRATE, s, 2).cells.tobytes() for s in range(20)}) > 1
    with pytest.raises(ValueError, match="no start states for 'clean_up'"):
        states.pick("clean_up", 0, 2)


def test_view_table_file_is_used(checkpoint):
    env = dream(checkpoint)
    assert isinstance(env.dream.view_table, ViewTable) and len(env.dream.view_table) > 0


def test_pettingzoo_registry_makes_the_dream(checkpoint):
    import actionparty_env  # noqa: F401  (registers actionparty/dream-v0)
    import pettingzoo

    env = pettingzoo.make("parallel", "actionparty/dream-v0", substrate=SUBSTRATE, checkpoint=checkpoint, device="cpu")
    assert isinstance(env, DreamParallelEnv) and env.substrate == SUBSTRATE


def test_cli_play_writes_a_gif_and_says_what_happened(checkpoint, tmp_path, capsys):
    from actionparty_env.cli import main

    gif = tmp_path / "dream.gif"
    assert main(["play", SUBSTRATE, "--checkpoint", str(checkpoint), "--device", "cpu", "--steps", "4",
                 "--gif", str(gif), "--views"]) == 0
    out = capsys.readouterr().out
    assert "coins: 4 steps with 2 players" in out and "player_1" in out and gif.stat().st_size > 0
