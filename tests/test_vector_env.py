"""DreamVecEnv: B worlds x N players as one SB3 VecEnv on a tiny random world model (the real model
code): shapes and spaces, same-step auto-reset, seeding, pickling without weights, the VecEnv
methods, bad actions, SB3 PPO running on the dream (its policy updated, episodes auto-reset) and PPO
learning through DreamVecEnv where the reward teaches something (a one-action bandit simulator)."""
from __future__ import annotations

import functools
import pickle

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecMonitor

from actionparty_env.games import get_game
from actionparty_env.simulator import CopyLastFrameSimulator
from actionparty_env.vector import DreamVecEnv
from tests.conftest import DREAM_SUBSTRATE as SUBSTRATE

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def checkpoint(dream_checkpoint):
    return dream_checkpoint  # tests/conftest.py: a tiny random model with real start states and a view table


def vec(checkpoint, num_worlds=3, **kw) -> DreamVecEnv:
    return DreamVecEnv(SUBSTRATE, num_worlds, checkpoint=checkpoint, device="cpu", **kw)


def random_actions(env, rng):
    return rng.integers(env.action_space.n, size=env.num_envs)


def test_slots_are_world_major_and_obs_fit_the_space(checkpoint):
    env = vec(checkpoint, temperature=1.0)
    env.seed(3)
    obs = env.reset()
    assert env.num_envs == 6 and obs.shape == (6, 88, 88, 3) and obs.dtype == np.uint8
    assert all(env.observation_space.contains(o) for o in obs)
    # Slot k is player k % N of world k // N: it equals the crop the dream made for that player.
    views = env.dream.views(env.dream.last).numpy()
    assert np.array_equal(obs[3], views[1, 1])
    obs, rewards, dones, infos = env.step(random_actions(env, np.random.default_rng(0)))
    assert obs.shape == (6, 88, 88, 3) and rewards.shape == (6,) and rewards.dtype == np.float32
    assert dones.shape == (6,) and not dones.any() and len(infos) == 6
    assert set(infos[0]) == {"cell", "facing", "alive"}
    assert infos[3]["cell"] == tuple(env.dream.last.cells[1, 1].tolist())


def test_channels_first(checkpoint):
    env = vec(checkpoint, 2, channels_first=True)
    obs = env.reset()
    assert env.observation_space.shape == (3, 88, 88) and obs.shape == (4, 3, 88, 88)
    assert np.array_equal(obs[1].transpose(1, 2, 0), env.dream.views(env.dream.last)[0, 1].numpy())


def test_worlds_reset_in_the_same_step_at_max_cycles(checkpoint):
    env = vec(checkpoint, 2, max_cycles=3, temperature=1.0)
    env.seed(0)
    env.reset()
    rng = np.random.default_rng(1)
    for _ in range(2):
        _, _, dones, infos = env.step(random_actions(env, rng))
        assert not dones.any() and "terminal_observation" not in infos[0]
    obs, _, dones, infos = env.step(random_actions(env, rng))
    assert dones.all()
    for k, info in enumerate(infos):
        assert info["TimeLimit.truncated"] is True
        assert env.observation_space.contains(info["terminal_observation"])
    # The returned observations are the new start states' views, not the terminal ones.
    starts = env.dream.starts.states[SUBSTRATE]
    assert any(np.array_equal(env.dream.last.frames[0].numpy(), s.frame) for s in starts)
    assert np.array_equal(obs, env.dream.views(env.dream.last).reshape(4, 88, 88, 3).numpy())
    _, _, dones, _ = env.step(random_actions(env, rng))
    assert not dones.any()  # a fresh episode


def test_seeded_runs_repeat(checkpoint):
    def run(seed):
        env = vec(checkpoint, 2, temperature=1.0)
        env.seed(seed)
        out = [env.reset()]
        rng = np.random.default_rng(5)
        out += [env.step(random_actions(env, rng))[0] for _ in range(8)]
        return np.stack(out)

    assert np.array_equal(run(7), run(7))
    assert not np.array_equal(run(7), run(8))


def test_pickles_by_constructor_arguments_without_weights(checkpoint):
    env = vec(checkpoint, 2)
    env.reset()
    assert env.dream._sim is not None
    blob = pickle.dumps(env)
    assert len(blob) < 4096  # arguments only: no weights, no frames
    copy = pickle.loads(blob)
    assert copy.dream._sim is None and copy.num_envs == env.num_envs  # the model loads on first use
    assert copy.reset().shape == (4, 88, 88, 3) and copy.dream._sim is not None


def test_vecenv_methods(checkpoint):
    env = vec(checkpoint, 2, render_mode="rgb_array")
    env.reset()
    assert env.get_attr("max_cycles") == [1000] * 4
    env.set_attr("note", "hi", indices=[1])
    assert env.get_attr("note", indices=[1]) == ["hi"]
    assert len(env.env_method("get_images", indices=[0, 2])) == 2
    assert env.env_is_wrapped(VecMonitor) == [False] * 4
    assert env.seed(3) == [3, 4, 5, 6]
    image = env.render()
    frame = env.dream.last.frames[0].numpy()
    assert image.ndim == 3 and image.shape[2] == 3 and (image.shape[0] >= frame.shape[0])
    assert len(env.get_images()) == 2 and np.array_equal(env.get_images()[0], frame)


def test_world_states_and_seed_worlds(checkpoint):
    env = vec(checkpoint, 2, temperature=1.0)
    env.seed_worlds([9, 4])  # any seed per world, for a wrapper that numbers its episodes otherwise
    env.reset()
    assert env.episode_seeds.tolist() == [9, 4]
    _, rewards, _, infos = env.step(random_actions(env, np.random.default_rng(0)))
    states = env.world_states()  # what a closed-loop policy of a world's players reads, as numpy
    last = env.dream.last
    for w, s in enumerate(states):
        assert np.array_equal(s.frame, last.frames[w].numpy()) and np.array_equal(s.frame, env.get_images()[w])
        assert np.array_equal(s.cells, last.cells[w].numpy()) and s.cells.dtype == np.int64
        assert s.facing.tolist() == [infos[w * 2 + i]["facing"] for i in range(2)]
        assert s.alive.dtype == bool and s.rewards.tolist() == rewards[w * 2:w * 2 + 2].tolist()
    with pytest.raises(ValueError, match="one seed per world"):
        env.seed_worlds([1])
    with pytest.raises(ValueError, match=r"seeds\[1\]"):
        env.seed_worlds([1, -1])


@pytest.mark.parametrize("actions, match", [
    (np.zeros(5, np.int64), r"shape \(6,\)"),
    (np.full(6, 7), r"in \[0, 7\)"),
    (np.full(6, -1), r"in \[0, 7\)"),
    (np.full(6, 0.5), "integers"),
])
def test_bad_actions_are_value_errors_and_change_nothing(checkpoint, actions, match):
    env = vec(checkpoint, temperature=1.0)
    env.seed(1)
    env.reset()
    frames = env.dream.last.frames.clone()
    with pytest.raises(ValueError, match=match):
        env.step(actions)
    assert torch.equal(frames, env.dream.last.frames) and (env._cycles == 0).all()
    fresh = vec(checkpoint, temperature=1.0)
    fresh.seed(1)
    fresh.reset()
    good = np.arange(6) % 7
    assert np.array_equal(env.step(good)[0], fresh.step(good)[0])


def test_copy_last_frame_baseline_batched(checkpoint):
    env = vec(checkpoint, 4, max_cycles=2, simulator=functools.partial(CopyLastFrameSimulator, get_game(SUBSTRATE)))
    obs0 = env.reset()
    obs, rewards, dones, _ = env.step(np.ones(8, np.int64))
    assert np.array_equal(obs, obs0) and not rewards.any() and not dones.any()
    obs, rewards, dones, infos = env.step(np.ones(8, np.int64))
    # The terminal observations are the finished episode's (unchanged) views.
    assert dones.all() and all(np.array_equal(i["terminal_observation"], o) for i, o in zip(infos, obs0))


@pytest.mark.slow  # 2048 PPO steps
def test_ppo_runs_on_the_dream_updates_its_policy_and_sees_episodes_end(checkpoint):
    """What this checks: SB3's PPO trains end to end on DreamVecEnv (a random model gives no reward to
    learn; learning itself is the bandit test below)."""
    env = VecMonitor(vec(checkpoint, 8, max_cycles=64, channels_first=True, temperature=1.0))
    model = PPO("CnnPolicy", env, n_steps=32, batch_size=128, n_epochs=1, learning_rate=3e-4, device="cpu",
                policy_kwargs=dict(features_extractor_kwargs=dict(features_dim=32), net_arch=[32]), seed=0)
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(total_timesteps=2048)
    assert model.num_timesteps >= 2048
    assert any(not torch.equal(a, b) for a, b in zip(before, model.policy.parameters()))
    assert len(model.ep_info_buffer) > 0 and all(np.isfinite(e["r"]) for e in model.ep_info_buffer)
    assert all(e["l"] == 64 for e in model.ep_info_buffer)  # episodes ended at max_cycles and were auto-reset


class BanditSimulator(CopyLastFrameSimulator):
    """The frame never changes; a player earns 1 for action GOOD, 0 otherwise: a policy that learns picks it."""

    GOOD = 1

    def step(self, actions):
        out = super().step(actions)
        out.rewards = (torch.as_tensor(actions, device=self.device) == self.GOOD).float()
        return out


@pytest.mark.slow  # 3072 PPO steps
def test_ppo_learns_through_the_dream_vec_env(checkpoint):
    env = VecMonitor(vec(checkpoint, 8, max_cycles=32, channels_first=True,
                         simulator=functools.partial(BanditSimulator, get_game(SUBSTRATE))))
    model = PPO("CnnPolicy", env, n_steps=16, batch_size=64, n_epochs=4, learning_rate=1e-3, ent_coef=0.0,
                device="cpu", policy_kwargs=dict(features_extractor_kwargs=dict(features_dim=32), net_arch=[32]),
                seed=0)
    obs = torch.as_tensor(env.reset()[:1], device="cpu")

    def p_good() -> float:
        with torch.no_grad():
            return float(model.policy.get_distribution(obs).distribution.probs[0, BanditSimulator.GOOD])

    before = p_good()
    model.learn(total_timesteps=3072)
    after = p_good()
    assert before < 0.3 and after > 0.6, (before, after)  # from about 1/8 to most of the mass
