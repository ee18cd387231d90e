"""A trained SB3 policy as a behaviour of the recorder (`--policy sb3:PATH.zip`): the players it
drives act on their own real views as the policy says; bad paths are refused up front."""
import os

import gymnasium as gym
import numpy as np
import pytest
import torch

from actionparty_env.games import get_game
from training.policies import check_policy_name
from training.record import RecordConfig, record
from training.store import list_episodes, read_episode

GAME = get_game("coins")
ALWAYS = 3  # the action the scripted policy always takes


class ViewSpaces(gym.Env):
    """Only the spaces of a coins player (PPO needs an env to be built; it is never stepped)."""
    observation_space = gym.spaces.Box(0, 255, (3, GAME.view_px, GAME.view_px), np.uint8)
    action_space = gym.spaces.Discrete(GAME.num_actions)


@pytest.fixture(scope="module")
def always_three(tmp_path_factory) -> str:
    """A saved SB3 PPO whose policy takes action ALWAYS whatever it sees."""
    from stable_baselines3 import PPO

    model = PPO("CnnPolicy", ViewSpaces(), n_steps=8, batch_size=8, device="cpu")
    with torch.no_grad():
        model.policy.action_net.weight.zero_()
        model.policy.action_net.bias.fill_(-1e4)
        model.policy.action_net.bias[ALWAYS] = 1e4
    path = tmp_path_factory.mktemp("sb3") / "always.zip"
    model.save(path)
    return str(path)


def test_recorded_sb3_players_take_the_policys_actions(always_three, tmp_path):
    data = str(tmp_path / "data")
    record(RecordConfig(data, ("coins",), 4, steps=20, workers=1, seed=11, policy=f"sb3:{always_three}"))
    driven = []
    for key in list_episodes(data):
        ep = read_episode(data, key)
        policy = ep.header["policy"]
        assert policy["name"] == "sb3" and policy["path"] == always_three
        trained = np.array([b == "sb3" for b in policy["behaviours"]])
        driven.append(ep.actions[:, trained].ravel())
        if (~trained).any():  # the others play rl_mix, which is not one action over and over
            assert (ep.actions[:, ~trained] != ALWAYS).any()
    driven = np.concatenate(driven)
    assert len(driven) > 0, "no player drew the trained policy in 4 episodes"
    # every step but the epsilon share (0.1) of random ones
    assert (driven == ALWAYS).mean() >= 0.8


def test_an_sb3_policy_that_is_not_there_is_refused_before_recording(tmp_path):
    with pytest.raises(ValueError, match="no file"):
        check_policy_name(f"sb3:{tmp_path / 'missing.zip'}")
    with pytest.raises(ValueError, match="no file"):
        record(RecordConfig(str(tmp_path / "d"), ("coins",), 1, steps=2, workers=1, policy="sb3:nope.zip"))
    assert not (tmp_path / "d").exists() or not list_episodes(str(tmp_path / "d"))
    with pytest.raises(ValueError, match="unknown policy"):
        check_policy_name("greedy")


def test_a_recording_worker_runs_torch_on_one_thread(tmp_path):
    """Workers are one per core: a policy network on every core's threads in each of them oversubscribes
    the machine (8 frames/s on 16 cores instead of about 1,100)."""
    from training.record import _worker_main

    class Stop:  # the parent's end of the pipe, sending "stop" at once
        def recv(self):
            return None

    before, saved = torch.get_num_threads(), (os.dup(1), os.dup(2))  # the worker sends fds 1, 2 to its log
    try:
        torch.set_num_threads(2)
        log = tmp_path / "worker.log"
        log.touch()
        _worker_main(Stop(), str(log))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)
