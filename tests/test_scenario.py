"""ScenarioVecEnv (benchmarks/scenario.py): K focal slots per world among rl_mix background players.

On scripted worlds: the slots, the focal rule, the focal players' rewards and actions, the auto-reset
and `episode_returns`' numbering, SB3's checks and PPO. In the real clean_up: the background's
actions are rl_mix's on the world's real states (replayed by rl_mix driven directly) and its
cleaners fire at the river. In the dream (the small bundled checkpoint): the same seed gives the
same background and the same episode."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecCheckNan, VecMonitor

from actionparty_env.clean_up import FIRE_CLEAN
from actionparty_env.games import get_game
from actionparty_env.grid import PlayerStates
from actionparty_env.real_vector import RealVecEnv
from actionparty_env.vector import DreamVecEnv, WorldState
from benchmarks import rl
from benchmarks.scenario import ScenarioVecEnv
from training.policies import ClosedLoopPolicy, State, rl_mix
from tests.fake_worlds import ScriptedWorlds

pytestmark = pytest.mark.usefixtures("one_thread")
CLEAN_UP = get_game("clean_up")


class ScenarioWorlds(ScriptedWorlds):
    """`ScriptedWorlds` of 3 players on a black 10x10 map, with the world states a background reads."""

    def __init__(self, num_worlds: int, max_cycles: int, players: int = 3):
        super().__init__(num_worlds, max_cycles, players)

    def world_states(self):
        players = PlayerStates(np.array([[1, 1], [1, 4], [5, 1]]), np.zeros(3, np.int64), np.ones(3, bool))
        return [WorldState(players, np.zeros((80, 80, 3), np.uint8), self._rewards()[w]) for w in range(self.num_worlds)]


def test_focal_slots_their_rewards_actions_and_episode_numbering_on_scripted_worlds(monkeypatch):
    took = []  # what every world's rl_mix is told its players really did
    monkeypatch.setattr(ClosedLoopPolicy, "took", lambda self, actions: took.append(np.array(actions)))
    inner = ScenarioWorlds(num_worlds=2, max_cycles=4)
    env = ScenarioVecEnv(inner, focal=1)
    assert env.num_envs == 2 and env.num_worlds == 2 and env.num_players == 1
    assert env.observation_space == inner.observation_space and env.action_space == inner.action_space
    returns = rl.episode_returns(env, lambda obs: np.full(len(obs), 3), episodes=3, seed=1000)
    # episode i starts from 1000 + i * K; its focal player is its seed mod 3: world 0 (seed 1000: player 1)
    # runs 4 steps at 2 each, world 1 (1001: player 2) ends after 2 at 3 each, the third episode is world 0
    # of the second batch (1002: player 0), 4 steps at 1 each
    assert inner.started_seeds == [1000, 1001, 1002, 1003]
    assert returns.tolist() == [8.0, 6.0, 4.0]
    first_batch = np.stack(inner.actions[:4])  # [steps, worlds, players]
    assert (first_batch[:, 0, 1] == 3).all() and (first_batch[:2, 1, 2] == 3).all()  # the agent's actions
    assert np.array_equal(np.stack(took).reshape(-1, 2, 3), np.stack(inner.actions))


def test_an_ended_world_gets_new_focal_slots_and_reports_the_old_ones():
    env = ScenarioVecEnv(ScenarioWorlds(num_worlds=2, max_cycles=4), focal=2)
    assert env.seed(10) == [10, 11, 12, 13]
    obs = env.reset()
    assert env.focal_slots.tolist() == [[1, 2], [0, 1]]  # seeds 10 and 12: from 10 % 3 = 1 and 12 % 3 = 0 on
    assert obs.shape == (4, 3, 88, 88) and obs[:, 0, 0, 0].tolist() == [1, 2, 0, 1]  # each slot sees its player's view
    assert env.reset_infos == [{}] * 4
    env.step(np.zeros(4, np.int64))
    obs, rewards, dones, infos = env.step(np.zeros(4, np.int64))  # world 1 ends: reset in the same step
    assert env.focal_slots[1].tolist() == [2, 0]  # its new episode's seed mod 3 = 2 on (the env's own draw)
    # the old focal players' rewards, dones and last views; the new focal players' first views
    assert rewards.tolist() == [2.0, 3.0, 1.0, 2.0] and dones.tolist() == [False, False, True, True]
    assert [info["terminal_observation"][0, 0, 0] for info in infos[2:]] == [0, 1]
    assert obs[:, 0, 0, 0].tolist() == [1, 2, 2, 0]


def test_sb3_checks_and_ppo_run_on_it():
    scenario = ScenarioVecEnv(ScenarioWorlds(num_worlds=2, max_cycles=3), focal=2)
    env = VecCheckNan(VecMonitor(scenario), raise_exception=True)
    model = PPO("CnnPolicy", env, n_steps=8, batch_size=16, n_epochs=1, seed=0, device="cpu")
    model.learn(16)
    assert model.num_timesteps == 32  # 4 slots x 8 steps: the focal slots only


def test_bad_input_is_a_clear_error():
    inner = ScenarioWorlds(num_worlds=1, max_cycles=4)
    for focal in (0, 3):
        with pytest.raises(ValueError, match=r"focal must be an int in 1\.\.2"):
            ScenarioVecEnv(inner, focal=focal)
    with pytest.raises(ValueError, match="background must be one of"):
        ScenarioVecEnv(inner, background="mix")
    with pytest.raises(TypeError, match="WorldsVecEnv"):
        ScenarioVecEnv(VecMonitor(inner))
    env = ScenarioVecEnv(inner, focal=2)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(2, np.int64))
    env.reset()
    with pytest.raises(ValueError, match=r"shape \(2,\) \(one per focal slot\)"):
        env.step(np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="integers"):
        env.step(np.full(2, 0.5))
    with pytest.raises(ValueError, match=r"seed must be an int in 0\.\."):
        env.seed(-1)


def spy(env: ScenarioVecEnv) -> tuple[list, list]:
    """Record the inner env's joint actions and the world states the background reads."""
    inner, actions, states = env.env, [], []
    step_async, world_states = inner.step_async, inner.world_states
    inner.step_async = lambda a: (actions.append(np.array(a).reshape(inner.num_worlds, -1)), step_async(a))[1]
    inner.world_states = lambda: (states.append(world_states()), states[-1])[1]
    return actions, states


def test_in_the_real_clean_up_the_background_is_rl_mix_on_the_real_states_and_cleans():
    env = ScenarioVecEnv(RealVecEnv("clean_up", 2, max_cycles=100), focal=1)
    actions, states = spy(env)
    env.seed(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the real game's seed warning
        env.reset()
    agent = np.random.default_rng(0)
    for _ in range(40):
        a = agent.integers(CLEAN_UP.num_actions, size=2)
        env.step(a)
        assert (actions[-1][[0, 1], env.focal_slots[:, 0]] == a).all()  # the focal players get the agent's actions
    env.close()
    joint = np.stack(actions)  # [steps, worlds, players]
    background = np.ones((2, 7), bool)
    background[[0, 1], env.focal_slots[:, 0]] = False
    # rl_mix driven directly on the same states, told the same joint actions, picks the same background actions
    for w, seed in enumerate(env.episode_seeds):
        policy = rl_mix(CLEAN_UP.action_set, 7, int(seed))
        for t in range(40):
            s = states[t][w]
            picked = policy.act(t, State(s.players, 21, 30, frame=s.frame, rewards=s.rewards))
            assert np.array_equal(picked[background[w]], joint[t, w][background[w]]), (w, t)
            policy.took(joint[t, w])
    # its cleaners walk to the river's dirt and fire at it
    fired = (joint[:, background] == CLEAN_UP.action_names.index(FIRE_CLEAN)).sum()
    assert fired > 1.5 * background.sum() * 40 / CLEAN_UP.num_actions, fired  # half again random play's 1 in 9


def test_in_the_dream_the_same_seed_gives_the_same_background_and_episode():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the bundled clean_up data grew no apple
        env = ScenarioVecEnv(DreamVecEnv("clean_up", 1, checkpoint="small", device="cpu", channels_first=True), focal=2)
        actions, _ = spy(env)

        def run(seed: int) -> tuple[np.ndarray, np.ndarray]:
            actions.clear()
            env.seed(seed)
            obs = [env.reset()]
            obs += [env.step(np.full(2, CLEAN_UP.action_names.index("TURN_LEFT")))[0] for _ in range(6)]
            return np.stack(actions), np.stack(obs)

        (a, obs), (again, obs_again), (other, _) = run(3), run(3), run(4)
    assert obs.shape == (7, 2, 3, 88, 88)
    assert np.array_equal(a, again) and np.array_equal(obs, obs_again)
    assert not np.array_equal(a, other)
