"""The scripted action patterns of benchmarks/patterns.py and what `run` counts, on a scripted env."""
import numpy as np

from actionparty_env.games import get_game
from benchmarks.patterns import PATTERNS, pattern_actions, run

NAMES = get_game("commons_harvest__open").action_names


def test_shuttle_walks_every_player_forward_then_back_and_noop_does_nothing():
    fwd, back = NAMES.index("FORWARD"), NAMES.index("BACKWARD")
    shuttle = pattern_actions("shuttle", NAMES, 3, 6, seed=0)
    assert shuttle.shape == (6, 3) and (shuttle == np.array([fwd, back] * 3)[:, None]).all()
    assert (pattern_actions("noop", NAMES, 3, 4, seed=0) == NAMES.index("NOOP")).all()
    for pattern in PATTERNS:
        actions = pattern_actions(pattern, NAMES, 2, 5, seed=1)
        assert actions.shape == (5, 2) and actions.min() >= 0 and actions.max() < len(NAMES)


class ScriptedEnv:
    """Two players; player 0 earns 1 on every step and steps onto player 1's cell at step 2."""
    possible_agents = ["player_0", "player_1"]

    def __init__(self):
        self.t = 0

    def step(self, actions):
        self.t += 1
        cell0 = [0, 1] if self.t == 2 else [0, 0]
        infos = {"player_0": {"cell": cell0, "alive": True, "facing": 0},
                 "player_1": {"cell": [0, 1], "alive": True, "facing": 0}}
        return {}, {"player_0": 1.0, "player_1": 0.0}, {}, {}, infos

    def state(self):
        return np.zeros((4 * 8, 4 * 8, 3), np.uint8)


def test_run_counts_rewards_events_and_overlaps():
    infos = {"player_0": {"cell": [0, 0], "alive": True, "facing": 0},
             "player_1": {"cell": [0, 1], "alive": True, "facing": 0}}
    counts = run(ScriptedEnv(), ({}, infos), np.zeros((3, 2), int), move_ids={1}, torus=False)
    assert counts["reward"] == 3.0 and counts["reward_events"] == 3
    assert counts["overlaps"] == 1 and counts["steps"] == 3


def test_closed_loop_patterns_act_on_the_state_and_return_the_actions_they_took():
    from benchmarks.patterns import CLOSED_LOOP, closed_loop_policy

    game = get_game("commons_harvest__open")
    assert set(CLOSED_LOOP) <= set(PATTERNS)
    policy = closed_loop_policy("chase", game.action_set, 2, seed=0)
    assert policy.behaviours == ["seeker", "seeker"]
    infos = {"player_0": {"cell": [0, 0], "alive": True, "facing": 0},
             "player_1": {"cell": [0, 1], "alive": True, "facing": 0}}
    counts = run(ScriptedEnv(), ({}, infos), None, move_ids={1}, torus=False, policy=policy, steps=3)
    assert counts["steps"] == 3 and counts["actions"].shape == (3, 2)
