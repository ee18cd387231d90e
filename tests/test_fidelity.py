"""Each fidelity metric on hand-made cases with known answers, and the benchmark end to end.

The hand-made cases use a small drawn world (a floor, a wall border, three players with their own
colours and a facing marker): a player moved, a ghost copy left behind, a swapped identity, a
missing player, a blocked move, a wrong turn, pixel errors of known size, and the state heads.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.detector import PlayerDetector
from benchmarks.fidelity import main, score_episode, table_value, write_results
from benchmarks.rules import RuleChecker, rule_outcome

NAMES = ("NOOP", "FORWARD", "BACKWARD", "STEP_LEFT", "STEP_RIGHT", "TURN_LEFT", "TURN_RIGHT")
NOOP, FORWARD, TURN_LEFT, TURN_RIGHT = 0, 1, 5, 6
ROWS, COLS = 7, 9
COLOURS = np.array([(220, 40, 40), (40, 200, 60), (60, 90, 230)], np.uint8)
MARKER = {0: (slice(0, 2), slice(3, 5)), 1: (slice(3, 5), slice(6, 8)), 2: (slice(6, 8), slice(3, 5)),
          3: (slice(3, 5), slice(0, 2))}  # facing N, E, S, W: a white mark on that side of the body


def floor(r: int, c: int) -> np.ndarray:
    p = np.full((8, 8, 3), 30, np.uint8)
    p[(r + c) % 2::2, ::2] = 45  # a texture that differs from cell to cell
    return p


def wall() -> np.ndarray:
    return np.full((8, 8, 3), 128, np.uint8)


def sprite(background: np.ndarray, colour, facing: int) -> np.ndarray:
    p = background.copy()
    p[2:6, 2:6] = colour
    p[MARKER[facing]] = 255
    return p


def draw(cells, facing, alive, colours=COLOURS, extra=()) -> np.ndarray:
    """A frame with the players drawn; extra: (cell, colour, facing) sprites drawn as well."""
    f = np.zeros((ROWS * 8, COLS * 8, 3), np.uint8)
    for r in range(ROWS):
        for c in range(COLS):
            border = r in (0, ROWS - 1) or c in (0, COLS - 1)
            f[r * 8:r * 8 + 8, c * 8:c * 8 + 8] = wall() if border else floor(r, c)
    for (r, c), col, fa in [(cells[i], colours[i], facing[i]) for i in range(len(cells)) if alive[i]] + list(extra):
        f[r * 8:r * 8 + 8, c * 8:c * 8 + 8] = sprite(f[r * 8:r * 8 + 8, c * 8:c * 8 + 8], col, fa)
    return f


def random_episode(seed: int, steps: int = 60, colours=COLOURS):
    """A random walk of three players inside the walls (ground truth and frames)."""
    rng = np.random.default_rng(seed)
    n = len(colours)
    cells = [np.array([[1, 1], [3, 4], [5, 7]])]
    facing = [rng.integers(0, 4, n)]
    actions = []
    for _ in range(steps):
        a = rng.integers(0, 7, n)
        new, turned, _ = rule_outcome(NAMES, a, cells[-1], facing[-1])
        nxt = cells[-1].copy()
        for i in range(n):  # walls and other players block
            y, x = new[i]
            if 1 <= y < ROWS - 1 and 1 <= x < COLS - 1 and not any((nxt[j] == new[i]).all() for j in range(n) if j != i):
                nxt[i] = new[i]
        actions.append(a)
        cells.append(nxt)
        facing.append(turned)
    cells, facing = np.array(cells), np.array(facing)
    alive = np.ones(facing.shape, bool)
    frames = np.stack([draw(c, f, a, colours) for c, f, a in zip(cells, facing, alive)])
    return frames, cells, facing, alive, np.array(actions)


@pytest.fixture(scope="module")
def world():
    eps = [random_episode(s) for s in range(3)]
    det = PlayerDetector.fit([e[0] for e in eps], [e[1] for e in eps], [e[2] for e in eps], [e[3] for e in eps])
    rules = RuleChecker(NAMES, passable={("", floor(r, c).tobytes()) for r in range(ROWS) for c in range(COLS)})
    return det, rules


# A two-frame case: player 0 at (2,2) facing east moves FORWARD to (2,3); 1 and 2 do NOOP.
S0 = (np.array([[2, 2], [4, 4], [5, 6]]), np.array([1, 0, 3]), np.ones(3, bool))
S1 = (np.array([[2, 3], [4, 4], [5, 6]]), np.array([1, 0, 3]), np.ones(3, bool))


def case(world, run_second: np.ndarray, actions=(FORWARD, NOOP, NOOP), second=S1, heads=None):
    """Score a run whose second frame is `run_second` against the real step S0 -> `second`."""
    real = {"frames": np.stack([draw(*S0), draw(*second)]), "actions": np.array([actions]),
            "cells": np.stack([S0[0], second[0]]), "facing": np.stack([S0[1], second[1]]),
            "alive": np.stack([S0[2], second[2]])}
    return score_episode(world[0], world[1], real, np.stack([draw(*S0), run_second]), heads)


def at1(scores, metric):
    num, den = scores[metric][:, 1]
    return num, den


def test_detector_learns_three_identities_and_their_facings(world):
    det, _ = world
    assert det.identity_visible and det.classes.tolist() == [0, 1, 2]
    frames, cells, facing, alive, _ = random_episode(99)
    for t in (0, 30, 60):
        c, f, found = det.assign(det.detect(frames[t]))
        assert found.all() and (c == cells[t]).all() and (f == facing[t]).all()


def test_a_player_that_moved_as_told(world):
    s = case(world, draw(*S1))
    for m in ("follow", "preserve", "traj"):
        assert at1(s, m) == (3, 3), m
    assert at1(s, "follow_mt") == (1, 1)
    assert at1(s, "ghosts")[0] == 0 and at1(s, "lost")[0] == 0
    assert at1(s, "cell") == (ROWS * COLS, ROWS * COLS)
    assert at1(s, "sqerr")[0] == 0


def test_a_ghost_copy_left_behind(world):
    ghost = draw(*S1, extra=[((2, 2), COLOURS[0], 1)])
    s = case(world, ghost)
    assert at1(s, "preserve") == (2, 3)        # player 0 drawn twice
    assert at1(s, "ghosts")[0] == 1 and at1(s, "lost")[0] == 0
    assert at1(s, "follow") == (2, 3)          # which copy is player 0 is unknown
    assert at1(s, "traj") == (2, 3)
    assert at1(s, "cell") == (ROWS * COLS - 1, ROWS * COLS)


def test_a_swapped_identity(world):
    colours = COLOURS.copy()
    colours[0] = COLOURS[1]                    # player 0 drawn with player 1's colours
    s = case(world, draw(*S1, colours=colours))
    assert at1(s, "preserve") == (1, 3)        # 0 lost, 1 drawn twice; 2 fine
    assert at1(s, "ghosts")[0] == 1 and at1(s, "lost")[0] == 1
    assert at1(s, "follow") == (1, 3)
    assert at1(s, "traj") == (1, 3)


def test_a_missing_player(world):
    s = case(world, draw(S1[0], S1[1], np.array([False, True, True])))
    assert at1(s, "preserve") == (2, 3)
    assert at1(s, "lost")[0] == 1 and at1(s, "ghosts")[0] == 0
    assert at1(s, "follow") == (2, 3) and at1(s, "traj") == (2, 3)


def test_a_player_that_did_not_move(world):
    s = case(world, draw(*S0))                        # FORWARD onto free floor, but it stayed
    assert at1(s, "follow") == (2, 3) and at1(s, "follow_mt") == (0, 1)
    assert at1(s, "preserve") == (3, 3) and at1(s, "traj") == (2, 3)


def test_a_move_into_a_wall_or_a_player_may_stay(world):
    into_wall = (np.array([[1, 1], [4, 4], [5, 6]]), np.array([0, 0, 3]), np.ones(3, bool))  # 0 faces the wall
    real = {"frames": np.stack([draw(*into_wall)] * 2), "actions": np.array([[FORWARD, NOOP, FORWARD]]),
            "cells": np.stack([into_wall[0]] * 2), "facing": np.stack([into_wall[1]] * 2),
            "alive": np.stack([into_wall[2]] * 2)}
    s = score_episode(*world, real, real["frames"])
    assert at1(s, "follow") == (2, 3)          # 0 blocked by the wall: follows; 2 faces free floor: does not
    blocker = (np.array([[4, 3], [4, 4], [5, 6]]), np.array([1, 0, 3]), np.ones(3, bool))  # 0 faces player 1
    real2 = {**real, "frames": np.stack([draw(*blocker)] * 2), "cells": np.stack([blocker[0]] * 2),
             "facing": np.stack([blocker[1]] * 2), "actions": np.array([[FORWARD, NOOP, NOOP]])}
    assert at1(score_episode(*world, real2, real2["frames"]), "follow") == (3, 3)


def test_a_turn_the_wrong_way(world):
    right = (S0[0], np.array([2, 0, 3]), S0[2])
    left = (S0[0], np.array([0, 0, 3]), S0[2])
    assert at1(case(world, draw(*right), (TURN_RIGHT, NOOP, NOOP), second=right), "follow") == (3, 3)
    s = case(world, draw(*left), (TURN_RIGHT, NOOP, NOOP), second=right)
    assert at1(s, "follow") == (2, 3) and at1(s, "traj") == (2, 3) and at1(s, "preserve") == (3, 3)


def test_pixel_errors_of_known_size(world):
    for offset, cells_ok in ((5, ROWS * COLS), (10, 0)):
        frame = draw(*S1).astype(np.int16) + offset
        s = case(world, np.clip(frame, 0, 255).astype(np.uint8))
        assert at1(s, "cell")[0] == cells_ok
        assert abs(table_value(s["sqerr"][0], s["sqerr"][1], "psnr", 1) - 10 * np.log10(255 ** 2 / offset ** 2)) < 0.2


def test_state_heads_against_the_detector(world):
    heads = {"cells": np.stack([S0[0], S1[0]]), "facing": np.stack([S0[1], S1[1]]), "alive": np.stack([S0[2], S1[2]])}
    assert at1(case(world, draw(*S1), heads=heads), "heads") == (3, 3)
    wrong = {k: v.copy() for k, v in heads.items()}
    wrong["cells"][1, 0] = (3, 3)              # the head says player 0 is elsewhere
    wrong["alive"][1, 2] = False               # and that player 2 is gone, but it is drawn
    assert at1(case(world, draw(*S1), heads=wrong), "heads") == (1, 3)


def test_shared_colours_keep_identity_by_continuity():
    colours = np.array([COLOURS[0], COLOURS[0], COLOURS[2]])
    eps = [random_episode(s, colours=colours) for s in range(3)]
    det = PlayerDetector.fit([e[0] for e in eps], [e[1] for e in eps], [e[2] for e in eps], [e[3] for e in eps])
    assert not det.identity_visible and det.classes.tolist() == [0, 0, 1]
    frames, cells, facing, alive, actions = random_episode(7, colours=colours)
    rules = RuleChecker(NAMES, passable={("", floor(r, c).tobytes()) for r in range(ROWS) for c in range(COLS)})
    real = {"frames": frames, "actions": actions, "cells": cells, "facing": facing, "alive": alive}
    s = score_episode(det, rules, real, frames)
    for m in ("follow", "preserve", "traj"):
        assert s[m][0].sum() == s[m][1].sum(), m


def test_table_pools_or_takes_the_step():
    num, den = np.array([0, 1, 0, 3.0]), np.array([0, 2, 2, 4.0])
    assert table_value(num, den, "follow", 3) == pytest.approx(4 / 8)
    assert table_value(num, den, "traj", 3) == pytest.approx(3 / 4)
    assert table_value(num, den, "traj", 9) is None
    assert table_value(np.zeros(2), np.ones(2), "psnr", 1) == float("inf")


def test_results_files_keep_a_tag_with_a_dot(tmp_path):
    """A tag may hold a dot (h200_v1.5): every results file keeps the whole name (no suffix cut off)."""
    meta = {"device_name": "cpu", "commit": "abc1234", "episodes": 0, "split": "test", "seconds": 0.0,
            "templates_from": "the test episodes", "horizons": [1]}
    curves = {"follow": [[0.0, 1.0], [0.0, 2.0]]}  # numerator and denominator at t = 0, 1
    result = {"meta": meta, "substrates": {}, "runs": {"dream": {"overall": {"table": {}, "curves": curves}}}}
    paths = write_results(result, str(tmp_path / "fidelity_h200_v1.5"))
    names = ["fidelity_h200_v1.5.json", "fidelity_h200_v1.5.md", "fidelity_h200_v1.5_horizons.png"]
    assert [p.name for p in paths] == names[:len(paths)] and len(paths) >= 2  # the plot needs matplotlib
    assert all(p.is_file() for p in paths)


def test_benchmark_end_to_end_on_real_episodes(tmp_path):
    """Record two real test episodes, dream them with the bundled checkpoint, score all runs."""
    from training.record import RecordConfig, record

    data = str(tmp_path / "data")
    record(RecordConfig(data, ("collaborative_cooking__asymmetric",), 2, steps=8, workers=1, seed=1, split="test"))
    out = tmp_path / "res" / "fidelity_cpu"
    args = ["--data", data, "--horizons", "1", "2", "8", "--device", "cpu", "--cache", str(tmp_path / "cache")]
    assert main(args + ["--gifs", "1", "--out-dir", str(tmp_path / "res")]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    assert main(args + ["--gifs", "0", "--out-dir", str(tmp_path / "again")]) == 0  # scored from the cache
    again = json.loads((tmp_path / "again" / "fidelity_cpu.json").read_text())
    assert again["runs"]["dream"] == result["runs"]["dream"]
    real, copy = result["runs"]["real"]["overall"]["table"], result["runs"]["copy_last"]["overall"]["table"]
    for m in ("follow@8", "preserve@8", "traj@8", "cell@8"):
        assert real[m] == 1.0, m          # the real frames are the ceiling: detector and rules agree with the game
    assert copy["preserve@8"] == 1.0 and copy["traj@8"] < 1.0
    assert 0.0 <= result["runs"]["dream"]["overall"]["table"]["follow@8"] <= 1.0
    assert result["runs"]["dream"]["overall"]["table"]["heads@8"] is not None
    assert (tmp_path / "res" / "fidelity_cpu_horizons.png").stat().st_size > 10_000
    assert list((tmp_path / "res" / "fidelity_cpu_gifs").glob("*.gif"))
    assert "ActionParty" in out.with_suffix(".md").read_text()
    with pytest.raises(SystemExit):
        main(["--data", data, "--horizons", "0"])
    with pytest.raises(SystemExit):
        main(["--data", data, "--substrates", "coinz"])
    write_results(result, str(tmp_path / "other" / "fid"))
    assert (tmp_path / "other" / "fid.md").exists()
