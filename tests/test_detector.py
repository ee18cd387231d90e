"""The pixel player detector and the rule checker on real recorded Melting Pot frames.

A tiny real dataset (4 substrates x (4 train + 1 test) episodes x 60 steps) is recorded once per
module; the detector is built from the train episodes and measured on the held-out test episode.
(benchmarks/results/fidelity_detector_cpu.md measures all 49 substrates the same way.)
"""
from __future__ import annotations

import numpy as np
import pytest

from actionparty_env.games import get_game
from benchmarks.detector import PlayerDetector, detector_accuracy
from benchmarks.fidelity import score_episode
from benchmarks.rules import RuleChecker, rule_outcome

VISIBLE = ("commons_harvest__open", "prisoners_dilemma_in_the_matrix__arena", "stag_hunt_in_the_matrix__arena")
SHARED = "pure_coordination_in_the_matrix__repeated"  # both players drawn alike


@pytest.fixture(scope="module")
def episodes(tmp_path_factory):
    from training.dataset import list_episodes, read_episode
    from training.record import RecordConfig, record

    path = str(tmp_path_factory.mktemp("detector_data"))
    subs = VISIBLE + (SHARED,)
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


def test_shared_colours_are_reported_and_scored_on_cell_and_facing(episodes):
    det = fit(episodes[SHARED]["train"])
    assert not det.identity_visible and det.num_classes == 1  # the catalog agrees: identity hidden
    assert not get_game(SHARED).identity_visible
    ep = episodes[SHARED]["test"][0]
    acc = detector_accuracy(det, ep.frames, ep.cells, ep.facing, ep.alive)
    assert acc["found"] / acc["live"] >= 0.999 and acc["false"] == 0


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


def test_fit_rejects_inconsistent_arrays(episodes):
    ep = episodes[SHARED]["train"][0]
    with pytest.raises(ValueError, match="disagree"):
        PlayerDetector.fit([ep.frames], [ep.cells[:-1]], [ep.facing], [ep.alive])
    with pytest.raises(ValueError, match="same number"):
        PlayerDetector.fit([ep.frames], [], [ep.facing], [ep.alive])
    det = fit([ep])
    with pytest.raises(ValueError, match="uint8"):
        det.detect(ep.frames[0][:-3])
