"""RealVecEnv: K real Melting Pots in subprocesses as one SB3 VecEnv, on coins (K=2, N=2) and
collaborative_cooking__asymmetric: slots map to the right player of the right world, reset,
truncation and Melting Pot's own end with same-step auto-reset, seeding, the VecEnv methods, bad
input, a dead worker, close(), and SB3 PPO running on it behind VecMonitor and VecCheckNan.

Melting Pot does not replay an episode from its seed (Lua's spawn order and other table orders vary
from one engine build to the next, even in one process), so seeding is checked on what the seed
fixes: the seed each world gets, and coins' map size and colours, drawn from it in Python."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecCheckNan, VecMonitor

from actionparty_env.games import get_game
from actionparty_env.players import MAX_SEED
from actionparty_env.real import RealParallelEnv
from actionparty_env.real_vector import RealVecEnv
from tests.fake_worlds import FakeWorlds

COINS = get_game("coins")
TURN_RIGHT = COINS.action_names.index("TURN_RIGHT")


@pytest.fixture(scope="module")
def coins():
    env = RealVecEnv("coins", 2, render_mode="rgb_array")
    yield env
    env.close()


def coins_map(frame: np.ndarray) -> tuple:
    """What coins draws from the seed: the map size and the colours used."""
    return frame.shape, frozenset(map(tuple, frame.reshape(-1, 3)))


def real_map(seed: int) -> tuple:
    env = RealParallelEnv("coins")
    env.reset(seed=seed)
    return coins_map(env.state())


def noop(env) -> np.ndarray:
    return np.zeros(env.num_envs, np.int64)


def test_reset_gives_every_slot_its_players_view(coins):
    obs = coins.reset()
    assert coins.num_envs == 4 and obs.shape == (4, 88, 88, 3) and obs.dtype == np.uint8
    assert coins.observation_space.shape == (88, 88, 3) and coins.action_space.n == COINS.num_actions
    assert all(coins.observation_space.contains(o) for o in obs)
    assert len(coins.reset_infos) == 4 and set(coins.reset_infos[0]) == {"cell", "facing", "alive"}
    assert all(info["alive"] is True for info in coins.reset_infos)


def test_an_action_in_slot_k_turns_player_k_mod_n_of_world_k_div_n_only(coins):
    obs, infos = coins.reset(), coins.reset_infos
    for k in range(coins.num_envs):
        actions = noop(coins)
        actions[k] = TURN_RIGHT
        new, rewards, dones, new_infos = coins.step(actions)
        assert rewards.shape == (4,) and rewards.dtype == np.float32 and not dones.any()
        for j in range(coins.num_envs):
            assert new_infos[j]["cell"] == infos[j]["cell"]  # nobody moves
            turned = (infos[j]["facing"] + 1) % 4 if j == k else infos[j]["facing"]
            assert new_infos[j]["facing"] == turned, (k, j)
        # A player that turns sees its view rotate; the others see at most a sprite change.
        changed = (new != obs).any(axis=-1).mean(axis=(1, 2))
        assert changed[k] > 0.05 and np.delete(changed, k).max() < 0.02, (k, changed)
        obs, infos = new, new_infos


def test_seed_gives_world_w_the_seed_of_slot_w_times_n(coins):
    assert coins.seed(10) == [10, 11, 12, 13]
    coins.reset()
    assert coins.episode_seeds.tolist() == [10, 12]  # different worlds, different seeds
    # Each world plays the map its seed draws, as one RealParallelEnv reset with that seed does.
    frames = coins.get_images()
    assert [coins_map(f) for f in frames] == [real_map(10), real_map(12)]
    assert coins_map(frames[0]) != coins_map(frames[1])


def test_world_states_hold_each_worlds_frame_players_and_last_rewards(coins):
    coins.seed_worlds([21, 5])  # any seed per world (seed(s) is the case s + w*N)
    coins.reset()
    assert coins.episode_seeds.tolist() == [21, 5]
    states = coins.world_states()
    assert [coins_map(s.frame) for s in states] == [real_map(21), real_map(5)]
    assert all(not s.rewards.any() for s in states)  # nothing paid at the start
    for _ in range(3):
        _, rewards, _, infos = coins.step(np.random.default_rng(0).integers(COINS.num_actions, size=4))
    for w, s in enumerate(coins.world_states()):
        assert np.array_equal(s.frame, coins.get_images()[w])
        assert [tuple(c) for c in s.cells.tolist()] == [infos[w * 2 + i]["cell"] for i in range(2)]
        assert s.facing.tolist() == [infos[w * 2 + i]["facing"] for i in range(2)]
        assert s.rewards.tolist() == rewards[w * 2:w * 2 + 2].tolist()


def test_same_seed_same_episodes_and_auto_reset_seeds():
    def run(seed):
        env = RealVecEnv("coins", 2, max_cycles=2, seed=seed, render_mode="rgb_array")
        env.reset()
        seeds, maps = [env.episode_seeds.copy()], [[coins_map(f) for f in env.get_images()]]
        for _ in range(4):  # two auto-resets
            env.step(noop(env))
            seeds.append(env.episode_seeds.copy())
        maps.append([coins_map(f) for f in env.get_images()])
        env.close()
        return np.stack(seeds), maps

    (seeds_a, maps_a), (seeds_b, maps_b), (seeds_c, _) = run(3), run(3), run(4)
    assert np.array_equal(seeds_a, seeds_b) and maps_a == maps_b
    assert len(np.unique(seeds_a)) == 6  # start + 2 auto-resets, 2 worlds: all different
    assert not np.array_equal(seeds_a, seeds_c)


def test_max_cycles_truncates_and_resets_the_worlds_in_the_same_step():
    env = RealVecEnv("coins", 2, max_cycles=3, render_mode="rgb_array")
    env.seed(0)
    env.reset()
    start = env.get_images()
    for _ in range(2):
        _, _, dones, infos = env.step(np.full(4, TURN_RIGHT))
        assert not dones.any() and "terminal_observation" not in infos[0]
    before = env.reset_infos
    obs, _, dones, infos = env.step(np.full(4, TURN_RIGHT))
    assert dones.all()
    for k, info in enumerate(infos):
        assert info["TimeLimit.truncated"] is True
        assert env.observation_space.contains(info["terminal_observation"])
        assert not np.array_equal(info["terminal_observation"], obs[k])  # obs is the new episode's
        assert info["facing"] == (before[k]["facing"] + 3) % 4  # infos are the terminal step's
    # The new episodes start from the env's seed stream, as DreamVecEnv's do.
    rng = np.random.default_rng(0)
    expected = [int(rng.integers(MAX_SEED)) for _ in range(2)]
    assert env.episode_seeds.tolist() == expected
    assert [coins_map(f) for f in env.get_images()] == [real_map(s) for s in expected] != \
        [coins_map(f) for f in start]
    _, _, dones, _ = env.step(noop(env))
    assert not dones.any()  # a fresh episode
    env.close()


def test_a_world_ending_alone_resets_alone(coins):
    coins.seed(5)
    coins.reset()
    seeds = coins.episode_seeds.copy()
    coins._cycles[1] = coins.max_cycles - 1  # world 1 is one step from its end
    _, _, dones, infos = coins.step(np.full(4, TURN_RIGHT))
    assert dones.tolist() == [False, False, True, True] and "terminal_observation" not in infos[0]
    assert coins.episode_seeds[0] == seeds[0] and coins.episode_seeds[1] != seeds[1]
    assert coins._cycles.tolist() == [1, 0]
    facing = [i["facing"] for i in infos]
    _, _, dones, infos = coins.step(noop(coins))
    assert not dones.any()
    assert [i["facing"] for i in infos[:2]] == facing[:2]  # world 0 goes on where it was


def test_melting_pots_own_end_is_not_a_truncation():
    env = RealVecEnv("collaborative_cooking__asymmetric", 2, max_cycles=5000)  # the game ends at 1000
    obs = env.reset()
    assert obs.shape == (4, 40, 40, 3)
    for step in range(1, 1001):
        obs, _, dones, infos = env.step(noop(env))
        if dones.any():
            break
    assert step == 1000 and dones.all()
    assert all(i["TimeLimit.truncated"] is False and "terminal_observation" in i for i in infos)
    assert env._cycles.tolist() == [0, 0]
    env.close()


def test_vecenv_methods(coins):
    coins.reset()
    assert coins.get_attr("max_cycles") == [1000] * 4 and coins.get_attr("substrate", 2) == ["coins"]
    coins.set_attr("note", "hi", indices=[1])
    assert coins.get_attr("note", indices=[1]) == ["hi"]
    assert len(coins.env_method("get_images", indices=[0, 2])) == 2
    assert coins.env_is_wrapped(VecMonitor) == [False] * 4
    frames = coins.get_images()
    assert len(frames) == 2 and all(f.ndim == 3 and f.shape[2] == 3 for f in frames)
    image = coins.render()
    h = max(f.shape[0] for f in frames)
    assert image.ndim == 3 and image.shape[0] >= h and np.array_equal(image[:frames[0].shape[0], :frames[0].shape[1]],
                                                                      frames[0])


def test_bad_actions_are_value_errors_and_change_nothing(coins):
    coins.reset()
    cycles = coins._cycles.copy()
    for actions, match in [(np.zeros(3, np.int64), r"shape \(4,\)"), (np.full(4, COINS.num_actions), "in \\[0"),
                           (np.full(4, 0.5), "integers")]:
        with pytest.raises(ValueError, match=match):
            coins.step(actions)
    assert np.array_equal(coins._cycles, cycles)
    assert coins.step(noop(coins))[0].shape == (4, 88, 88, 3)


@pytest.mark.parametrize("kwargs, match", [
    (dict(substrate="coin"), "unknown substrate 'coin'; did you mean coins"),
    (dict(num_worlds=0), "num_worlds must be an int >= 1"),
    (dict(num_worlds=1.5), "num_worlds must be an int >= 1"),
    (dict(num_players=0), "coins does not take 0 players"),
    (dict(max_cycles=0), "max_cycles must be an int >= 1"),
    (dict(render_mode="human"), "render_mode must be None or 'rgb_array'"),
    (dict(start_method="threads"), "start_method must be None or one of"),
])
def test_bad_input_is_a_value_error_before_any_worker_starts(kwargs, match):
    import multiprocessing

    before = set(multiprocessing.active_children())
    with pytest.raises(ValueError, match=match):
        RealVecEnv(**{"substrate": "coins", "num_worlds": 2, **kwargs})
    assert set(multiprocessing.active_children()) <= before


def test_a_player_count_the_substrate_refuses():
    with pytest.raises(ValueError, match="coins does not take 3 players"):
        RealVecEnv("coins", 2, num_players=3)


def test_a_dead_worker_is_a_clear_error_naming_its_world():
    env = RealVecEnv("coins", 2)
    env.reset()
    env._procs[1].kill()
    env._procs[1].join()
    with pytest.raises(RuntimeError, match=r"world 1: its worker process died \(exit code -9\); the env is closed"):
        env.step(noop(env))
    assert env.closed and not any(p.is_alive() for p in env._procs)
    with pytest.raises(RuntimeError, match="closed"):
        env.reset()


def test_close_ends_the_workers_and_pickling_starts_new_ones_and_worker_errors_close_it():
    env = RealVecEnv("coins", 2, max_cycles=7)
    assert env.num_envs == 4 and all(p.is_alive() for p in env._procs)
    blob = pickle.dumps(env)
    assert len(blob) < 1024  # constructor arguments only
    copy = pickle.loads(blob)
    assert copy.max_cycles == 7 and copy.num_envs == 4 and copy._procs[0].pid != env._procs[0].pid
    env.close()
    assert env.closed and all(p.exitcode == 0 for p in env._procs)
    env.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        env.step(noop(env))
    assert copy.reset().shape == (4, 88, 88, 3)
    with pytest.raises(RuntimeError, match="world 1: its worker raised ValueError: unknown command 'dance'; the env is closed"):
        copy._call([1], "dance", [None])  # an error in a worker comes back with its traceback
    assert copy.closed and all(p.exitcode == 0 for p in copy._procs)


@pytest.mark.usefixtures("one_thread")
def test_sb3_ppo_runs_on_it_behind_vecmonitor_and_veccheck_nan():
    env = VecCheckNan(VecMonitor(RealVecEnv("coins", 2, max_cycles=4, seed=0)), raise_exception=True)
    model = PPO("CnnPolicy", env, n_steps=8, batch_size=16, n_epochs=1, device="cpu", seed=0,
                policy_kwargs=dict(features_extractor_kwargs=dict(features_dim=32), net_arch=[32]))
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(total_timesteps=32)
    assert model.num_timesteps >= 32
    assert any(not torch.equal(a, b) for a, b in zip(before, model.policy.parameters()))
    assert len(model.ep_info_buffer) > 0  # episodes ended at max_cycles and were auto-reset
    env.close()
    assert env.unwrapped.closed


class CountingWorlds(FakeWorlds):
    """A fake for the shared bookkeeping: world w's views hold its step count; it ends on its own
    after `ends[w]` steps."""

    def __init__(self, ends, max_cycles):
        self._args = dict(ends=ends, max_cycles=max_cycles)
        self.ends, self.steps = np.array(ends), None
        self._init_worlds(COINS, len(ends), 2, max_cycles, False, None, seed=0)

    def _started(self):
        return self.steps is not None

    def _start_worlds(self, seeds, worlds, reseed):
        self.steps = np.zeros(self.num_worlds, np.int64) if worlds is None else np.where(worlds, 0, self.steps)
        return self._views()

    def _step_worlds(self, actions):
        self.steps = self.steps + 1
        return self._views(), np.ones((self.num_worlds, 2), np.float32), self.steps >= self.ends

    def _views(self):
        return np.broadcast_to(self.steps[:, None, None, None, None], (self.num_worlds, 2, 88, 88, 3)).astype(np.uint8)


def test_worlds_that_end_on_their_own_or_at_max_cycles_reset_in_the_same_step():
    env = CountingWorlds(ends=[2, 100, 3], max_cycles=3)
    env.reset()
    _, _, dones, _ = env.step(noop(env))
    assert not dones.any()
    obs, rewards, dones, infos = env.step(noop(env))  # world 0 ends on its own
    assert dones.tolist() == [True, True, False, False, False, False] and rewards.tolist() == [1.0] * 6
    assert infos[0]["TimeLimit.truncated"] is False and infos[0]["terminal_observation"][0, 0, 0] == 2
    assert obs[:, 0, 0, 0].tolist() == [0, 0, 2, 2, 2, 2]
    obs, _, dones, infos = env.step(noop(env))  # world 1 is cut at max_cycles; world 2 ends on its own then too
    assert dones.tolist() == [False, False, True, True, True, True]
    assert [infos[k]["TimeLimit.truncated"] for k in (2, 4)] == [True, False]
    assert obs[:, 0, 0, 0].tolist() == [1, 1, 0, 0, 0, 0]
