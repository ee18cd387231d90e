"""The pixel player detector and the rule checker on real recorded Melting Pot frames.

A tiny real dataset (4 substrates x (4 train + 1 test) episodes x 60 steps) is recorded once per
module; the detector is built from the train episodes and measured on the held-out test episode.
(benchmarks/results/fidelity_detector_cpu.md measures all 49 substrates the same way.)
"""
from __future__ import annotations

import numpy as np
import pytest

from actionparty_env.games import get_game
from actionparty_env.grid import CELL
from benchmarks.detector import PlayerDetector
from benchmarks.detector_accuracy import detector_accuracy
from benchmarks.fidelity import score_episode
from benchmarks.rules import FREE, FROZEN, UNDECIDED, RuleChecker, rule_outcome

VISIBLE = ("commons_harvest__open", "prisoners_dilemma_in_the_matrix__arena", "stag_hunt_in_the_matrix__arena")
SHARED = "pure_coordination_in_the_matrix__repeated"  # both players drawn alike
STAMINA = "predator_prey__open"  # moves and turns refused by the stamina


@pytest.fixture(scope="module")
def episodes(tmp_path_factory):
    from training.store import list_episodes, read_episode
    from training.record import RecordConfig, record

    path = str(tmp_path_factory.mktemp("detector_data"))
    subs = VISIBLE + (SHARED, STAMINA)
    record(RecordConfig(path, subs, 4, steps=60, workers=2, seed=3))
    record(RecordConfig(path, subs, 1, steps=60, workers=2, seed=3, split="test"))
    out = {}
    for sub in subs:
        out[sub] = {split: [read_episode(path, k) for k in list_episodes(path, split=split, substrate=sub)]
                    for split in ("train", "test")}
    return out


def fit(eps) -> PlayerDetector:
    return PlayerDetector.fit([e.frames for e in eps], [e.cells for e in eps], [e.facing for e in eps],
                              [e.alive for e in eps])


def real_arrays(ep) -> dict:
    return {"frames": ep.frames, "actions": ep.actions.astype(np.int64), "cells": ep.cells, "facing": ep.facing,
            "alive": ep.alive}


@pytest.mark.slow  # real episodes recorded for the module (about 20 s)
def test_detector_finds_players_on_held_out_real_frames(episodes):
    acc = {"live": 0, "found": 0, "found_once": 0, "false": 0}
    for substrate in VISIBLE:
        det = fit(episodes[substrate]["train"])
        assert det.identity_visible and det.num_classes == det.num_players
        for ep in episodes[substrate]["test"]:
            for k, v in detector_accuracy(det, ep.frames, ep.cells, ep.facing, ep.alive).items():
                acc[k] = acc.get(k, 0) + v
    assert acc["live"] > 1000
    assert acc["found_once"] / acc["live"] >= 0.999, acc
    assert acc["false"] == 0, acc


@pytest.mark.slow  # real episodes recorded for the module (about 20 s)
def test_shared_colours_are_reported_and_scored_on_cell_and_facing(episodes):
    det = fit(episodes[SHARED]["train"])
    assert not det.identity_visible and det.num_classes == 1  # the catalog agrees: identity hidden
    assert not get_game(SHARED).identity_visible
    ep = episodes[SHARED]["test"][0]
    acc = detector_accuracy(det, ep.frames, ep.cells, ep.facing, ep.alive)
    assert acc["found"] / acc["live"] >= 0.999 and acc["false"] == 0


@pytest.mark.slow  # real episodes recorded for the module (about 20 s)
@pytest.mark.parametrize("substrate", VISIBLE + (SHARED,))
def test_rule_checker_accepts_real_transitions(episodes, substrate):
    game = get_game(substrate)
    rules = RuleChecker.fit(game.action_names, episodes[substrate]["train"])
    assert rules.passable  # floors were entered
    det = fit(episodes[substrate]["train"])
    for ep in episodes[substrate]["test"]:
        s = score_episode(det, rules, real_arrays(ep), ep.frames)
        follow, scored = s["follow"].sum(1)
        assert scored > 50 and follow / scored >= 0.99, (follow, scored)
        # The same frames under other actions: a move where a player stayed, a turn where it moved...
        shuffled = real_arrays(ep)
        shuffled["actions"] = np.roll(shuffled["actions"], 7, axis=0)
        wrong = score_episode(det, rules, shuffled, ep.frames)["follow_mt"].sum(1)
        assert wrong[0] / wrong[1] < 0.8


def test_rule_outcome_moves_relative_to_facing_and_wraps_on_a_torus():
    names = ("NOOP", "FORWARD", "BACKWARD", "STEP_LEFT", "STEP_RIGHT", "TURN_LEFT", "TURN_RIGHT")
    cells = np.array([[5, 5]] * 7)
    facing = np.full(7, 1)  # facing east
    new, turned, kind = rule_outcome(names, np.arange(7), cells, facing)
    assert new.tolist() == [[5, 5], [5, 6], [5, 4], [4, 5], [6, 5], [5, 5], [5, 5]]
    assert turned.tolist() == [1, 1, 1, 1, 1, 0, 2]
    assert kind.tolist() == [0, 1, 1, 1, 1, 2, 2]
    edge, _, _ = rule_outcome(names, np.array([1]), np.array([[0, 9]]), np.array([1]), (4, 10), torus=True)
    assert edge.tolist() == [[0, 0]]


@pytest.mark.slow  # real episodes recorded for the module (about 20 s)
def test_fit_rejects_inconsistent_arrays(episodes):
    ep = episodes[SHARED]["train"][0]
    with pytest.raises(ValueError, match="disagree"):
        PlayerDetector.fit([ep.frames], [ep.cells[:-1]], [ep.facing], [ep.alive])
    with pytest.raises(ValueError, match="same number"):
        PlayerDetector.fit([ep.frames], [], [ep.facing], [ep.alive])
    det = fit([ep])
    with pytest.raises(ValueError, match="uint8"):
        det.detect(ep.frames[0][:-3])


@pytest.fixture(scope="module")
def stamina_detector(episodes) -> PlayerDetector:
    return fit(episodes[STAMINA]["train"])


@pytest.mark.slow  # real episodes recorded for the module (about 20 s)
def test_stamina_replayed_from_real_actions_explains_refused_moves(episodes, stamina_detector):
    game = get_game(STAMINA)
    rules = RuleChecker.fit(game.action_names, episodes[STAMINA]["train"])
    assert rules.substrate == STAMINA and any("prey" in r for r in rules.roles)
    plain = RuleChecker(rules.action_names, rules.torus, rules.passable)  # the movement rules alone
    for ep in episodes[STAMINA]["test"]:
        real = real_arrays(ep)
        situation = rules.situation(real)
        assert (situation == FROZEN).any() and not (situation == UNDECIDED).any()
        # On the ground-truth states (the detector's own misses are measured elsewhere).
        with_stamina, without = rules.score_truth(real)[0], plain.score_truth(real)[0]
        assert with_stamina[0] / with_stamina[1] >= 0.99 > without[0] / without[1], (with_stamina, without)
        # Doing nothing is no way to follow: the first frame repeated fails the moves and turns that the
        # real game's situation lets take effect.
        still = score_episode(stamina_detector, rules, real, np.repeat(ep.frames[:1], len(ep.frames), 0))
        assert still["follow_mt"][0].sum() / still["follow_mt"][1].sum() < 0.5


NAMES = ("NOOP", "FORWARD", "BACKWARD", "STEP_LEFT", "STEP_RIGHT", "TURN_LEFT", "TURN_RIGHT", "FIRE_ZAP", "HOLD",
         "SHOVE", "PULL")


def hand_made(actions: list[list[str]], cells: list[list[tuple[int, int]]], facing: list[list[int]]) -> dict:
    """A real episode's arrays on an empty 8 x 8 map: actions [T][N] by name, cells and facing [T+1][N]."""
    t1 = len(cells)
    return {"frames": np.zeros((t1, 64, 64, 3), np.uint8),
            "actions": np.array([[NAMES.index(a) for a in row] for row in actions], np.int64),
            "cells": np.array(cells, np.int64), "facing": np.array(facing, np.int64),
            "alive": np.ones((t1, len(cells[0])), bool)}


def test_prey_stamina_freezes_every_other_step_after_a_costly_action():
    rules = RuleChecker(NAMES, substrate="predator_prey__open", roles=("prey",))
    real = hand_made([["FORWARD"]] * 4 + [["NOOP"]], [[(5, 1)], [(4, 1)], [(4, 1)], [(3, 1)], [(3, 1)], [(3, 1)]],
                     [[0]] * 6)
    assert rules.situation(real)[:, 0].tolist() == [FREE, FROZEN, FREE, FROZEN, FREE]
    # A predator in the green band is never frozen by its stamina.
    assert (RuleChecker(NAMES, substrate="predator_prey__open", roles=("predator",)).situation(real) == FREE).all()


def test_a_zapped_players_refused_turns_are_frozen_only_inside_the_freeze_window():
    rules = RuleChecker(NAMES, substrate="territory__open")  # a zap freezes for 25 steps, beam 2 ahead, 1 aside
    steps = 40
    acts = [["FIRE_ZAP", "NOOP"]] + [["NOOP", "TURN_LEFT"]] * (steps - 1)
    cells = [[(2, 2), (2, 3)]] * (steps + 1)
    facing = [[1, 1]] * (steps + 1)                     # the victim never turns: refused all along
    situation = rules.situation(hand_made(acts, cells, facing))[:, 1]
    assert (situation[1:26] == FROZEN).all() and (situation[26:] == FREE).all()
    # The same refusals with no zap in reach (the zapper faces away): not frozen, the checker rejects them.
    away = rules.situation(hand_made(acts, cells, [[3, 1]] * (steps + 1)))[:, 1]
    assert (away == FREE).all()
    # Once a turn went through, the freeze is over: a later refusal is not absorbed.
    facing_after = [[1, 1]] * 6 + [[1, 0]] + [[1, 0]] * (steps - 6)
    went = rules.situation(hand_made(acts, cells, facing_after))[:, 1]
    assert (went[1:5] == FROZEN).all() and (went[6:] == FREE).all()
    # A frozen player must keep its cell and facing in the run scored.
    occupied = np.zeros((8, 8), bool)
    args = (np.array([NAMES.index("TURN_LEFT")] * 2), np.zeros((64, 64, 3), np.uint8), np.array([(2, 2), (2, 3)]),
            np.array([1, 1]), np.ones(2, bool))
    kept = rules.check(*args, np.array([(2, 2), (2, 3)]), np.array([1, 1]), np.ones(2, bool), occupied, occupied,
                       np.array([FREE, FROZEN]))
    turned = rules.check(*args, np.array([(2, 2), (2, 3)]), np.array([0, 0]), np.ones(2, bool), occupied, occupied,
                         np.array([FREE, FROZEN]))
    assert kept.tolist() == [False, True] and turned.tolist() == [True, False]


def test_a_player_in_reach_of_a_shove_is_undecided_and_not_scored():
    rules = RuleChecker(NAMES, substrate="fruit_market__concentric_rivers")
    real = hand_made([["SHOVE", "NOOP", "NOOP"]], [[(2, 2), (2, 3), (2, 6)], [(2, 2), (2, 4), (2, 6)]],
                     [[1, 1, 1], [1, 1, 1]])
    assert rules.situation(real)[0].tolist() == [FREE, UNDECIDED, FREE]
    occupied = np.zeros((8, 8), bool)
    ok = rules.check(real["actions"][0], real["frames"][0], real["cells"][0], real["facing"][0], np.ones(3, bool),
                     real["cells"][1], real["facing"][1], np.ones(3, bool), occupied, occupied, rules.situation(real)[0])
    assert ok.tolist() == [True, False, True]  # the undecided one is left out of the score by the caller


# Territory's zap mark (configs/substrates/territory.py MARKING_SPRITE): a black X drawn over the avatar.
MARK = np.array([[y == x or y == CELL - 1 - x for x in range(CELL)] for y in range(CELL)])


def marked(frames: np.ndarray, cells: np.ndarray, alive: np.ndarray, players, every: int,
           facing: np.ndarray | None = None, only_facing: int | None = None) -> np.ndarray:
    """`frames` with the mark drawn over the given players' cells every `every`-th frame (only while
    they face `only_facing`, if given)."""
    out = frames.copy()
    for t in range(0, len(frames), every):
        for i in players:
            r, c = (int(v) for v in cells[t, i])
            if only_facing is not None and facing[t, i] % 4 != only_facing:
                continue
            if alive[t, i] and 0 <= r < frames.shape[1] // CELL and 0 <= c < frames.shape[2] // CELL:
                out[t, r * CELL:(r + 1) * CELL, c * CELL:(c + 1) * CELL][MARK] = 0
    return out


def erased(ep, t: int) -> np.ndarray:
    """Frame t with every player's cell replaced by that cell at the nearest frame where no player is."""
    frame = ep.frames[t].copy()
    inside = ep.alive & (ep.cells >= 0).all(-1)
    for i in np.flatnonzero(inside[t]):
        r, c = (int(v) for v in ep.cells[t, i])
        free = [s for s in range(len(ep.frames)) if not (inside[s] & (ep.cells[s] == (r, c)).all(-1)).any()]
        s = min(free, key=lambda s: abs(s - t))
        cell = np.s_[r * CELL:(r + 1) * CELL, c * CELL:(c + 1) * CELL]
        frame[cell] = ep.frames[s][cell]
    return frame


@pytest.mark.slow  # real episodes recorded for the module (about 20 s)
def test_an_overlay_seen_on_one_player_is_tolerated_on_the_others(episodes):
    """The fit frames show the mark over player 0 facing north only; on held-out frames every player
    wears it (players and facings never seen marked) and is still found at its cell with its facing,
    with no false detection; without the learned overlays those marked players are missed."""
    substrate = VISIBLE[0]
    train = episodes[substrate]["train"]
    frames = [marked(e.frames, e.cells, e.alive, [0], every=3, facing=e.facing, only_facing=0) for e in train]
    det = PlayerDetector.fit(frames, [e.cells for e in train], [e.facing for e in train], [e.alive for e in train])
    assert len(det.overlays)
    plain = PlayerDetector(det.num_players, det.classes, det.templates)  # the same templates, no overlays
    acc, acc_plain = {}, {}
    for ep in episodes[substrate]["test"]:
        every = marked(ep.frames, ep.cells, ep.alive, range(det.num_players), every=1)
        for d, out in ((det, acc), (plain, acc_plain)):
            for k, v in detector_accuracy(d, every, ep.cells, ep.facing, ep.alive).items():
                out[k] = out.get(k, 0) + v
    assert acc["live"] > 300 and acc["found"] / acc["live"] >= 0.99 and acc["false"] == 0, acc
    assert acc_plain["found"] / acc_plain["live"] < 0.9, (acc, acc_plain)


@pytest.mark.slow  # real episodes recorded for the module (about 20 s)
def test_no_player_is_detected_where_the_players_are_erased(episodes):
    """Real frames with every player painted over by its cell's floor, bare or under the mark (an overlay
    without a player under it), show no player."""
    for substrate in VISIBLE + (SHARED,):
        train = episodes[substrate]["train"]
        frames = [marked(e.frames, e.cells, e.alive, [0], every=3) for e in train]
        det = PlayerDetector.fit(frames, [e.cells for e in train], [e.facing for e in train],
                                 [e.alive for e in train])
        ep = episodes[substrate]["test"][0]
        for t in range(0, len(ep.frames), 10):
            empty = erased(ep, t)
            assert det.detect(ep.frames[t]).any()
            assert not det.detect(empty).any(), (substrate, t)
            empty_marked = marked(empty[None], ep.cells[t:t + 1], ep.alive[t:t + 1], range(det.num_players), 1)
            assert not det.detect(empty_marked[0]).any(), (substrate, t)


def test_detector_accuracy_script_measures_held_out_episodes_and_writes_its_tables(tiny_dataset, tmp_path):
    import json

    from benchmarks import detector_accuracy as script

    out = tmp_path / "detector"
    assert script.main(["--data", str(tiny_dataset), "--substrates", "coins", "--out", str(out)]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    assert set(result["substrates"]) == {"coins"} and result["meta"]["tolerance"] > 0
    assert result["overall"]["live"] > 0 and result["overall"]["recall"] >= 0.9  # coins' players on real frames
    assert "coins" in out.with_suffix(".md").read_text()
