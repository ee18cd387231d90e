"""Behaviour policies: the open-loop ones unchanged, the closed-loop `rl_mix` on hand-made states and
in one short real recording."""
from __future__ import annotations

import json

import numpy as np
import pytest

from actionparty_env.games import get_game
from actionparty_env.grid import PlayerStates
from training.policies import (POLICIES, CollectorParams, FollowerParams, RLMixParams, SeekerParams, State,
                               make_policy, patch_hashes, rl_mix)

CLEAN_UP = get_game("clean_up")
A = {name: i for i, name in enumerate(CLEAN_UP.action_names)}  # NOOP, FORWARD, ..., FIRE_ZAP, FIRE_CLEAN


def state(cells, facing, alive=None, rows=10, cols=10, **kw) -> State:
    cells = np.array(cells)
    return State(PlayerStates(cells, np.array(facing), np.ones(len(cells), bool) if alive is None else np.array(alive)),
                 rows, cols, **kw)


def only(behaviour: str, **params) -> RLMixParams:
    """rl_mix params where every player has `behaviour`, with these parameters."""
    cls = dict(seeker=SeekerParams, blocker=FollowerParams, follower=FollowerParams,
               collector=CollectorParams)[behaviour]
    base = dict(spot="behind") if behaviour == "follower" else {}
    return RLMixParams(weights={behaviour: 1.0}, **{behaviour: cls(**base, **params)})


# ----------------------------------------------------------------------------- open-loop: unchanged

# make_policy(name, action_set, 4 players, seed=7): 12 steps per player (rows), computed with the
# implementation before the closed-loop policies existed (commit 7b0f299).
BEFORE = {
    ("clean_up", "persistent_random"): [[6, 6, 6, 6, 6, 6, 2, 2, 2, 4, 4, 4], [4, 4, 4, 4, 4, 4, 3, 3, 8, 8, 8, 8],
                                        [0, 0, 0, 0, 7, 7, 5, 5, 1, 1, 4, 4], [0, 0, 0, 2, 2, 2, 3, 3, 7, 2, 2, 2]],
    ("clean_up", "mix"): [[1, 6, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], [5, 2, 2, 2, 8, 7, 4, 4, 4, 7, 7, 7],
                          [4, 4, 4, 5, 5, 5, 2, 2, 4, 4, 4, 4], [6, 6, 6, 3, 3, 2, 2, 2, 2, 3, 3, 2]],
    ("coins", "persistent_random"): [[5, 5, 5, 5, 4, 4, 1, 1, 1, 3, 3, 3], [3, 3, 3, 3, 3, 3, 2, 2, 6, 6, 6, 6],
                                     [0, 0, 0, 0, 5, 5, 3, 3, 1, 1, 3, 3], [0, 0, 0, 1, 1, 1, 2, 2, 6, 1, 1, 1]],
    ("coins", "mix"): [[1, 5, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], [4, 1, 1, 1, 6, 6, 3, 3, 3, 5, 5, 5],
                       [3, 3, 3, 3, 3, 3, 1, 1, 3, 3, 3, 3], [4, 4, 4, 2, 2, 1, 1, 1, 1, 2, 2, 1]],
}


@pytest.mark.parametrize("sub,name", sorted(BEFORE))
def test_open_loop_policies_give_the_same_actions_as_before(sub, name):
    spec = get_game(sub)
    p = make_policy(name, spec.action_set, 4, seed=7)
    acts = np.stack([p.act() for _ in range(12)])
    assert acts.T.tolist() == BEFORE[sub, name]
    # the recorder's call (step, state) changes nothing for them
    q = make_policy(name, spec.action_set, 4, seed=7)
    s = state([[1, 1], [2, 2], [3, 3], [4, 4]], [0, 1, 2, 3])
    assert np.stack([q.act(t, s) for t in range(12)]).T.tolist() == BEFORE[sub, name]
    if name == "mix":
        assert p.describe()["behaviours"] == ["explorer", "persistent_random", "persistent_random",
                                              "persistent_random"]


# ----------------------------------------------------------------------------- seeker

def test_seeker_turns_or_steps_toward_a_player_to_its_side():
    # player 0 at (5, 5) faces N; player 1 stands 3 cells east: east is its right
    seen = set()
    for seed in range(40):
        p = rl_mix(CLEAN_UP.action_set, 2, seed, only("seeker", p_noise=0.0))
        a = int(p.act(0, state([[5, 5], [5, 8]], [0, 0]))[0])
        assert a in (A["TURN_RIGHT"], A["STEP_RIGHT"])
        seen.add(a)
    assert seen == {A["TURN_RIGHT"], A["STEP_RIGHT"]}  # both ways, as p_turn = 0.5 says
    # facing E the player is ahead (3 cells, in reach): fire or walk on; with p_fire 0: forward
    p = rl_mix(CLEAN_UP.action_set, 2, 0, only("seeker", p_noise=0.0, p_fire=0.0))
    assert int(p.act(0, state([[5, 5], [5, 8]], [1, 3]))[0]) == A["FORWARD"]
    # facing S the target (east) is on its left: with p_turn 0 it steps left
    p = rl_mix(CLEAN_UP.action_set, 2, 0, only("seeker", p_noise=0.0, p_turn=0.0))
    assert int(p.act(0, state([[5, 5], [5, 8]], [2, 0]))[0]) == A["STEP_LEFT"]


def test_seeker_fires_at_a_player_ahead_in_reach_and_not_beyond():
    fired = []
    for seed in range(60):
        p = rl_mix(CLEAN_UP.action_set, 2, seed, only("seeker", p_noise=0.0))
        fired.append(int(p.act(0, state([[5, 2], [5, 4]], [1, 3]))[0]))   # 2 cells ahead (E)
    fired = np.array(fired)
    use = np.isin(fired, [A["FIRE_ZAP"], A["FIRE_CLEAN"]])
    assert 0.5 < use.mean() < 0.9                                      # p_fire = 0.7
    assert (fired[use] == A["FIRE_ZAP"]).mean() > 0.7                  # the zap, player-directed
    assert set(fired[~use]) <= {A["FORWARD"]}                          # else it walks on
    # one cell to the side of the beam's line still counts (width 1); 2 cells to the side does not
    p = rl_mix(CLEAN_UP.action_set, 2, 1, only("seeker", p_noise=0.0, p_fire=1.0))
    assert int(p.act(0, state([[5, 2], [4, 4]], [1, 3]))[0]) in (A["FIRE_ZAP"], A["FIRE_CLEAN"])
    p = rl_mix(CLEAN_UP.action_set, 2, 1, only("seeker", p_noise=0.0, p_fire=1.0))
    assert int(p.act(0, state([[5, 2], [3, 4]], [1, 3]))[0]) not in (A["FIRE_ZAP"], A["FIRE_CLEAN"])
    # beyond reach (5 cells ahead): it walks toward the player
    p = rl_mix(CLEAN_UP.action_set, 2, 1, only("seeker", p_noise=0.0, p_fire=1.0))
    assert int(p.act(0, state([[5, 2], [5, 7]], [1, 3]))[0]) == A["FORWARD"]
    # a substrate without use actions (coins) never fires: it walks on
    coins = get_game("coins")
    p = rl_mix(coins.action_set, 2, 1, only("seeker", p_noise=0.0, p_fire=1.0))
    assert coins.action_names[int(p.act(0, state([[5, 2], [5, 4]], [1, 3]))[0])] == "FORWARD"


def test_seeker_ignores_dead_players_and_steers_round_a_known_wall():
    # the nearest player (east, 1 cell) is dead: it seeks the live one 3 cells north
    p = rl_mix(CLEAN_UP.action_set, 3, 0, only("seeker", p_noise=0.0, p_fire=0.0))
    assert int(p.act(0, state([[5, 5], [5, 6], [2, 5]], [0, 0, 0], alive=[True, False, True]))[0]) \
        == A["FORWARD"]
    # facing E toward a player 4 cells east: forward; the move fails into an empty cell (a wall):
    # next step it steps round it (N or S = STEP_LEFT / STEP_RIGHT), not into the wall again
    p = rl_mix(CLEAN_UP.action_set, 2, 0, only("seeker", p_noise=0.0, p_fire=0.0, p_unstick=0.0))
    s = state([[5, 5], [5, 9]], [1, 1])
    assert int(p.act(0, s)[0]) == A["FORWARD"]
    assert int(p.act(1, s)[0]) in (A["STEP_LEFT"], A["STEP_RIGHT"])


def test_took_tells_the_policy_what_a_player_another_policy_drove_really_did():
    # as above, but player 0 was a scenario's focal player and stood still (NOOP) instead of walking:
    # told so, the policy reads no bump and no wall from its unmoved cell, and walks on
    p = rl_mix(CLEAN_UP.action_set, 2, 0, only("seeker", p_noise=0.0, p_fire=0.0, p_unstick=0.0))
    s = state([[5, 5], [5, 9]], [1, 1])
    chosen = p.act(0, s)
    assert int(chosen[0]) == A["FORWARD"]
    p.took(np.array([A["NOOP"], chosen[1]]))
    assert int(p.act(1, s)[0]) == A["FORWARD"]
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        p.took(np.zeros(3, np.int64))
    with pytest.raises(RuntimeError, match="before act"):
        rl_mix(CLEAN_UP.action_set, 2, 0).took(np.zeros(2, np.int64))


def test_blocker_and_follower_take_their_spot_and_face_the_right_way():
    # the target (player 1) at (5, 5) faces E: the blocker's spot is (5, 6), the follower's (5, 4)
    p = rl_mix(CLEAN_UP.action_set, 2, 0, only("blocker", p_noise=0.0))
    assert int(p.act(0, state([[5, 6], [5, 5]], [0, 1]))[0]) == A["TURN_LEFT"]    # N -> W: face it
    p = rl_mix(CLEAN_UP.action_set, 2, 0, only("follower", p_noise=0.0))
    assert int(p.act(0, state([[5, 4], [5, 5]], [0, 1]))[0]) == A["TURN_RIGHT"]   # N -> E: its way
    # two cells before the spot, facing it: walk there
    p = rl_mix(CLEAN_UP.action_set, 2, 0, only("blocker", p_noise=0.0))
    assert int(p.act(0, state([[5, 8], [5, 5]], [3, 1]))[0]) == A["FORWARD"]


def test_collector_learns_what_pays_and_walks_to_it():
    rows = cols = 6
    frame = np.zeros((rows * 8, cols * 8, 3), np.uint8)
    apple = frame.copy()
    apple[1 * 8:2 * 8, 2 * 8:3 * 8] = (200, 30, 30)     # an apple at (1, 2)
    assert patch_hashes(apple)[1, 2] != patch_hashes(apple)[0, 0]
    assert patch_hashes(apple)[0, 0] == patch_hashes(apple)[5, 5]
    p = rl_mix(CLEAN_UP.action_set, 2, 0, only("collector", p_harvest=1.0, p_turn=0.0, p_unstick=0.0))
    # (player 1 starts dead, so it holds no action drawn before anything was known to pay)
    p.act(0, state([[1, 1], [4, 0]], [1, 1], alive=[True, False], rows=rows, cols=cols, frame=apple,
                   rewards=np.zeros(2)))
    assert not p._paid
    # player 0 stepped onto the apple and was paid; a new apple shows at (4, 3): player 1 (at (4, 0),
    # facing E) walks to it
    later = frame.copy()
    later[4 * 8:5 * 8, 3 * 8:4 * 8] = (200, 30, 30)
    a = p.act(1, state([[1, 2], [4, 0]], [1, 1], rows=rows, cols=cols, frame=later, rewards=np.array([1.0, 0.0])))
    assert p._paid == {int(patch_hashes(apple)[1, 2])} and int(a[1]) == A["FORWARD"]
    # facing N with the apple due east: it steps right
    q = rl_mix(CLEAN_UP.action_set, 2, 0, only("collector", p_harvest=1.0, p_turn=0.0, p_unstick=0.0))
    q._paid = set(p._paid)
    a = q.act(0, state([[1, 2], [4, 0]], [1, 0], rows=rows, cols=cols, frame=later, rewards=np.zeros(2)))
    assert int(a[1]) == A["STEP_RIGHT"]


# ----------------------------------------------------------------------------- the mixture

def random_states(n: int, steps: int, seed: int, rows=12, cols=14):
    rng = np.random.default_rng(seed)
    return [state(rng.integers(0, [rows, cols], (n, 2)), rng.integers(0, 4, n), rng.random(n) > 0.1,
                  rows=rows, cols=cols) for _ in range(steps)]


def test_rl_mix_is_seeded_mixes_its_behaviours_and_covers_the_action_space():
    assert "rl_mix" in POLICIES
    states = random_states(7, 300, 0)
    a = make_policy("rl_mix", CLEAN_UP.action_set, 7, seed=3)
    b = make_policy("rl_mix", CLEAN_UP.action_set, 7, seed=3)
    c = make_policy("rl_mix", CLEAN_UP.action_set, 7, seed=4)
    acts_a = np.stack([a.act(t, s) for t, s in enumerate(states)])
    acts_b = np.stack([b.act(t, s) for t, s in enumerate(states)])
    acts_c = np.stack([c.act(t, s) for t, s in enumerate(states)])
    assert a.describe() == b.describe() and np.array_equal(acts_a, acts_b)
    assert not np.array_equal(acts_a, acts_c)
    assert set(np.unique(acts_a)) == set(range(CLEAN_UP.num_actions))
    header = json.loads(json.dumps(a.describe()))     # goes into the episode header as JSON
    assert header["name"] == "rl_mix" and header["closed_loop"] and len(header["behaviours"]) == 7
    assert header["params"]["weights"]["persistent_random"] >= 0.3
    # over many players the behaviours come at their stated rates
    many = make_policy("rl_mix", CLEAN_UP.action_set, 4000, seed=1).describe()["behaviours"]
    weights = RLMixParams().weights  # clean_up has a river: its cleaners count
    for name, w in weights.items():
        assert abs(many.count(name) / 4000 - w / sum(weights.values())) < 0.03, name
    coins = make_policy("rl_mix", get_game("coins").action_set, 4000, seed=1).describe()["behaviours"]
    assert "cleaner" not in coins  # no river: the draw is over the others alone
    with pytest.raises(ValueError, match="closed-loop"):
        a.act()
    with pytest.raises(ValueError, match="cells"):
        a.act(0, state([[1, 1]], [0]))


def test_rl_mix_records_and_replays_from_the_stored_states(tmp_path):
    from training.store import read_episode
    from training.record import RecordConfig, record

    summary = record(RecordConfig(str(tmp_path), ("coins",), 1, steps=20, workers=1, seed=2,
                                  policy="rl_mix"), return_raw=True)
    assert summary.episodes == 1 and not summary.failed
    ep = read_episode(tmp_path, "ep/coins/000000")
    h = ep.header
    assert h["policy"]["name"] == "rl_mix" and h["policy"]["closed_loop"] and h["length"] == 20
    spec = get_game("coins")
    # the same seed and the same states give the same actions: the stored actions replay
    p = make_policy("rl_mix", spec.action_set, h["num_players"], h["seed"])
    rewards = np.zeros(h["num_players"], np.float32)
    for t in range(h["length"]):
        s = State(PlayerStates(ep.cells[t], ep.facing[t], ep.alive[t]), h["map_rows"], h["map_cols"], False,
                  ep.frames[t], rewards)
        assert np.array_equal(p.act(t, s), ep.actions[t]), t
        rewards = ep.rewards[t]


def test_cleaners_clean_clean_ups_river_until_apples_grow():
    """rl_mix in the real clean_up: its cleaners (about half the players there) find the dirt from the
    frame and, in shifts, clean the river below the 40% of dirt where apples stop growing (79 of 147
    dirty at the start), and apples grow and are eaten. Without cleaners no recorded episode grew one."""
    from actionparty_env.clean_up import RIVER_CELLS, clean_up_codes, map_cells
    from actionparty_env.model.codebook import Codebook, unique_patches
    from actionparty_env.real import MeltingPotEngine

    engine = MeltingPotEngine()
    step = engine.build("clean_up", seed=1)
    policy = rl_mix(CLEAN_UP.action_set, 7, seed=1)
    assert policy.behaviours.count("cleaner") >= 3
    rewards, least_dirt = 0.0, 147
    for t in range(300):
        step = engine.step(policy.act(t, State(step.players, 21, 30, frame=step.frame, rewards=step.rewards)))
        rewards += float(step.rewards.sum())
        if t % 25 == 24:
            book = Codebook.from_patch_sets([unique_patches(step.frame)])
            dirt = clean_up_codes(book.patches).dirt.numpy()[book.encode(step.frame).reshape(-1)]
            least_dirt = min(least_dirt, int((dirt & map_cells(RIVER_CELLS)).sum()))
    assert least_dirt < 0.4 * 147 and rewards > 5, (least_dirt, rewards)
