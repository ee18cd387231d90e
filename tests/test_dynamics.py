"""The dynamics benchmark (benchmarks/dynamics.py): each metric on a hand-made episode with known
answers, the aggregation (pooled rates, ratios, the return correlation and its undefined cases), and
the command end to end on a tiny recorded dataset with a tiny world model made here."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from benchmarks.dynamics import (aggregate, cell_changes, check_sim_kwargs, compare, episode_metrics, main,
                                 parse_sim_args, pearson, pool, ratio, within)

ROWS, COLS, S = 4, 5, 6
FLOOR, P0, P0_TURNED, P1, APPLE, OTHER = 0, 1, 2, 3, 4, 5


def hand_made():
    """A 4x5 map, 2 players, 6 steps with known answers.

    - rewards: player 0 gets +1 on steps 1 and 4 (rewards[0], rewards[3]), player 1 gets -2 on step 3:
      3 reward events, returns (+2, -2);
    - player 1 (at (3,4)) dies on step 2 and respawns on step 5: 1 death, 1 respawn, dead at t = 2, 3, 4;
    - player 0 moves (0,0) -> (0,1) on step 2 and turns on step 6 (its own cells change: not counted);
    - the world: step 1 two cells, step 3 one cell and the dead player's cell (a dead player occupies
      nothing), step 4 one cell; the death and respawn redraw (3,4) (a live player's cell: not counted).
    """
    codes = np.full((S + 1, ROWS, COLS), FLOOR)
    cells = np.zeros((S + 1, 2, 2), np.int64)
    cells[:, 0] = (0, 0)
    cells[2:, 0] = (0, 1)
    cells[:, 1] = (3, 4)
    alive = np.ones((S + 1, 2), bool)
    alive[2:5, 1] = False
    for t in range(S + 1):
        codes[t][tuple(cells[t, 0])] = P0_TURNED if t == 6 else P0
        if alive[t, 1]:
            codes[t, 3, 4] = P1
    codes[1:, 2, 2] = APPLE                 # step 1: two cells appear
    codes[1:, 2, 3] = APPLE
    codes[3:5, 3, 4] = APPLE                # step 3: on the dead player's cell (counted) ...
    codes[3:, 1, 1] = OTHER                 # ... and elsewhere
    codes[4:, 0, 4] = APPLE                 # step 4
    rewards = np.zeros((S, 2))
    rewards[0, 0] = rewards[3, 0] = 1.0
    rewards[2, 1] = -2.0
    return codes, cells, alive, rewards


def to_pixels(codes: np.ndarray) -> np.ndarray:
    patches = np.zeros((8, 8, 8, 3), np.uint8)
    for k in range(8):
        patches[k] = (30 * k, 255 - 20 * k, 7 * k)
    patches[P0_TURNED] = patches[P0]
    patches[P0_TURNED, 0, 0, 0] += 1                       # differs from P0 in one value only
    return patches[codes].transpose(0, 1, 3, 2, 4, 5).reshape(len(codes), ROWS * 8, COLS * 8, 3)


@pytest.mark.parametrize("pixels", [False, True])
def test_each_metric_on_a_hand_made_episode(pixels):
    codes, cells, alive, rewards = hand_made()
    frames = to_pixels(codes) if pixels else codes
    m = episode_metrics(frames, cells, alive, rewards, ended_at=6)
    assert m["steps"] == 6 and m["players"] == 2
    assert m["reward_events"] == 3
    assert m["returns"] == [2.0, -2.0]
    assert m["deaths"] == 1 and m["respawns"] == 1 and m["dead_player_steps"] == 3
    assert m["changed_cells"] == [2, 0, 2, 1, 0, 0]
    assert m["ended_at"] == 6
    assert episode_metrics(frames, cells, alive, rewards, reward_tolerance=1.5)["reward_events"] == 1  # the -2
    # Without the exclusion every changed cell counts: moves, the turn, the death and the respawn too.
    assert cell_changes(frames).sum((1, 2)).tolist() == [2, 3, 2, 1, 1, 1]
    p = pool([m])
    assert p["reward_events"] == pytest.approx(50.0)             # 3 events / 6 steps x 100
    assert p["deaths"] == pytest.approx(100 / 6) and p["respawns"] == pytest.approx(100 / 6)
    assert p["dead_share"] == pytest.approx(3 / 12)
    assert p["changed_cells"] == pytest.approx(5 / 6)
    assert p["changed_cells_curve"] == [2, 0, 2, 1, 0, 0]
    assert p["mean_return"] == 0.0 and p["ended"] == 1 and p["mean_end_step"] == 6


def test_a_still_world_and_bad_shapes():
    codes, cells, alive, rewards = hand_made()
    still = episode_metrics(np.repeat(codes[:1], S + 1, 0), np.repeat(cells[:1], S + 1, 0),
                            np.repeat(alive[:1], S + 1, 0), np.zeros_like(rewards))
    assert still["reward_events"] == still["deaths"] == still["respawns"] == 0
    assert still["changed_cells"] == [0] * S and still["ended_at"] is None
    with pytest.raises(ValueError, match="6 steps"):
        episode_metrics(codes[:-1], cells, alive, rewards)
    with pytest.raises(ValueError, match="ended_at"):
        episode_metrics(codes, cells, alive, rewards, ended_at=7)
    with pytest.raises(ValueError, match="grid"):
        cell_changes(np.zeros((2, 12, 16, 3), np.uint8))


def metrics(steps, events, deaths=0, returns=(0.0, 0.0), changed=None, ended_at=None, players=2):
    return {"steps": steps, "players": players, "reward_events": events, "deaths": deaths, "respawns": 0,
            "dead_player_steps": 0, "returns": list(returns),
            "changed_cells": list(changed if changed is not None else [1] * steps), "ended_at": ended_at}


def test_rates_are_pooled_over_episodes_and_compared_with_real():
    real = [metrics(10, 2, deaths=1, returns=(1, 2), ended_at=10), metrics(30, 2, deaths=1, returns=(3, 4))]
    run = [metrics(10, 4, deaths=0, returns=(2, 4), changed=[0] * 10), metrics(30, 1, deaths=2, returns=(6, 8))]
    p = pool(real)
    assert p["reward_events"] == pytest.approx(10.0)  # 4 events / 40 steps, not the mean of 20 and 6.7
    assert p["deaths"] == pytest.approx(5.0) and p["changed_cells"] == pytest.approx(1.0)
    c = compare(real, run)
    assert c["ratio"]["reward_events"] == pytest.approx(12.5 / 10.0)   # 5 / 40 vs 4 / 40
    assert not c["within"]["reward_events"]
    assert c["ratio"]["deaths"] == pytest.approx(1.0) and c["within"]["deaths"]
    assert c["ratio"]["changed_cells"] == pytest.approx(30 / 40) and not c["within"]["changed_cells"]
    assert c["ratio"]["respawns"] is None and c["within"]["respawns"]         # both 0
    assert c["returns"]["correlation"] == pytest.approx(1.0) and c["returns"]["correlation_undefined"] is None
    assert c["returns"]["mae"] == pytest.approx(2.5) and c["returns"]["bias"] == pytest.approx(2.5)
    assert c["end_agreement"] == pytest.approx(0.5)                            # episode 1 ended, its run did not
    assert c["meets"] == {"reward_events": False, "deaths": True, "changed_cells": False, "return_correlation": True}
    assert pool(run)["changed_cells_curve"] == [0.5] * 10 + [1.0] * 20         # mean over episodes at each step


def test_ratio_within_and_correlation_edge_cases():
    assert ratio(3, 0) is None and ratio(0, 4) == 0.0 and ratio(5, 4) == 1.25
    assert within(0, 0) and not within(1, 0) and within(1.2, 1.0) and not within(1.21, 1.0) and within(0.8, 1.0)
    assert pearson([1, 2, 3], [3, 2, 1])[0] == pytest.approx(-1.0)
    r, why = pearson([0, 0, 0], [1, 2, 3])
    assert math.isnan(r) and why == "the real returns do not vary"
    r, why = pearson([1, 2, 3], [0.5, 0.5, 0.5])
    assert math.isnan(r) and why == "the run's returns do not vary"
    assert pearson([1], [1])[1] == "fewer than 2 players"
    c = compare([metrics(5, 0)], [metrics(5, 0)])                           # no rewards on either side
    assert c["returns"]["correlation_undefined"] == "the real returns do not vary"
    assert c["meets"]["return_correlation"] is None


def test_aggregate_per_substrate_overall_and_targets():
    records = [
        {"substrate": "a", "runs": {"real": metrics(10, 2, returns=(1, 2)), "dream": metrics(10, 2, returns=(1, 3))}},
        {"substrate": "a", "runs": {"real": metrics(10, 0, returns=(0, 0)), "dream": metrics(10, 0, returns=(0, 1))}},
        {"substrate": "b", "runs": {"real": metrics(20, 4, returns=(5, 5)), "dream": metrics(20, 0, returns=(0, 0))}},
    ]
    out = aggregate(records)
    a, b, overall = (out["runs"]["dream"][w] for w in ("a", "b", "overall"))
    assert out["runs"]["real"]["a"]["values"]["reward_events"] == pytest.approx(10.0)
    assert "vs_real" not in out["runs"]["real"]["a"]
    assert a["vs_real"]["ratio"]["reward_events"] == pytest.approx(1.0)
    assert b["vs_real"]["ratio"]["reward_events"] == 0.0
    assert a["vs_real"]["returns"]["players"] == 4 and overall["vs_real"]["returns"]["players"] == 6
    assert b["vs_real"]["returns"]["correlation_undefined"] == "the real returns do not vary"
    assert out["runs"]["real"]["overall"]["values"]["reward_events"] == pytest.approx(100 * 6 / 40)
    assert out["targets"]["dream"]["reward_events"] == {"met": 1, "scored": 2}
    assert out["targets"]["dream"]["return_correlation"]["scored"] == 1


def test_simulator_keywords_are_parsed_and_checked():
    assert parse_sim_args(["temperature=0.5", "decoding=calibrated", "seed=3", "consistent_sprites=false"]) == \
        {"temperature": 0.5, "decoding": "calibrated", "seed": 3, "consistent_sprites": False}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_sim_args(["temperature"])
    check_sim_kwargs({"temperature": 0.0, "sampling_steps": 1, "seed": 1})
    with pytest.raises(ValueError, match="no_such_option="):
        check_sim_kwargs({"no_such_option": 1})


@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_dataset, tmp_path_factory):
    """The shared tiny dataset (tests/conftest.py: real recorder, coins + collaborative_cooking__asymmetric)
    and an untrained world model of the tiny training recipe with that data's tables (training.train's
    build_model), saved as a checkpoint."""
    import torch

    from actionparty_env.model.checkpoint import save_checkpoint
    from tests.conftest import ROOT
    from training.train import TrainConfig, build_model

    data = tiny_dataset
    out = tmp_path_factory.mktemp("dynamics")
    cfg = TrainConfig.from_args(["--config", str(ROOT / "training/configs/tiny.yaml"), "--set", f"data={data}",
                                 f"out={out / 'run'}", "workers=0"])
    torch.manual_seed(0)
    (out / "run").mkdir()
    model = build_model(cfg, out / "run", 0, 1)
    return data, save_checkpoint(model.eval(), out / "tiny_ck")


def test_command_end_to_end_on_recorded_episodes(tiny_checkpoint, tmp_path):
    from training.store import list_episodes, read_episode

    data, ck = tiny_checkpoint
    args = ["--data", str(data), "--checkpoint", str(ck), "--compare", f"same={ck}", "--episodes", "1",
            "--steps", "12", "--device", "cpu", "--sim-arg", "seed=3", "--cache", str(tmp_path / "cache"),
            "--out-dir", str(tmp_path), "--tag", "t"]
    assert main(args) == 0
    result = json.loads((tmp_path / "dynamics_t.json").read_text())
    assert set(result["runs"]) == {"real", "dream", "same", "copy_last"}
    assert result["meta"]["sim_kwargs"] == {"seed": 3} and result["meta"]["commit"]
    assert result["meta"]["checkpoint_ids"]["dream"] == result["meta"]["checkpoint_ids"]["same"]
    assert "dynamics" in result["meta"]["command"]
    # The real run's numbers are the dataset's own counts.
    keys = list_episodes(str(data), split="test")
    assert sorted(result["substrates"]) == sorted({k.split("/")[1] for k in keys})
    events = deaths = respawns = steps = 0
    for key in keys:
        ep = read_episode(str(data), key)
        s = min(12, len(ep.actions))
        sub = ep.header["substrate"]
        real = result["runs"]["real"][sub]["values"]
        a = ep.alive[: s + 1]
        counts = (int((ep.rewards[:s] != 0).sum()), int((a[:-1] & ~a[1:]).sum()), int((~a[:-1] & a[1:]).sum()))
        assert (real["reward_events_count"], real["deaths_count"], real["respawns_count"]) == counts
        assert real["steps"] == s
        mine = next(e for e in result["episodes"] if e["key"] == key)["runs"]["real"]
        assert mine["returns"] == pytest.approx(ep.rewards[:s].sum(0).tolist())
        events, deaths, respawns, steps = events + counts[0], deaths + counts[1], respawns + counts[2], steps + s
    overall = result["runs"]["real"]["overall"]["values"]
    assert overall["reward_events"] == pytest.approx(100 * events / steps)
    assert overall["deaths"] == pytest.approx(100 * deaths / steps)
    assert overall["respawns"] == pytest.approx(100 * respawns / steps)
    # The copy-last baseline: nothing ever happens.
    copy = result["runs"]["copy_last"]["overall"]["values"]
    assert copy["reward_events"] == copy["deaths"] == copy["respawns"] == copy["changed_cells"] == 0
    # Two runs of the same weights are the same dream.
    assert result["runs"]["same"] == result["runs"]["dream"]
    md = (tmp_path / "dynamics_t.md").read_text()
    assert "commit" in md and "reward events / 100 steps" in md and "copy_last" in md
    assert (tmp_path / "dynamics_t.png").stat().st_size > 10_000
    # One cached dream per substrate (`same` is the same checkpoint: its dreams are read back), and a rerun
    # scores from the cache alone.
    assert len(list((tmp_path / "cache").glob("*.json"))) == 2
    assert main(args[:-4] + ["--no-plot", "--out-dir", str(tmp_path / "again"), "--tag", "t"]) == 0
    assert not (tmp_path / "again" / "dynamics_t.png").exists()
    again = json.loads((tmp_path / "again" / "dynamics_t.json").read_text())
    assert again["runs"] == result["runs"] and again["meta"]["dream_seconds"] == result["meta"]["dream_seconds"]
    # Another reward tolerance is scored from the same cached dreams.
    assert main(args[:-4] + ["--reward-tolerance", "0.5", "--no-plot", "--out-dir", str(tmp_path / "tol"), "--tag", "t0.5"]) == 0
    assert len(list((tmp_path / "cache").glob("*.json"))) == 2
    tol = json.loads((tmp_path / "tol" / "dynamics_t0.5.json").read_text())
    assert tol["meta"]["reward_tolerance"] == 0.5 and "|r| > 0.5" in (tmp_path / "tol" / "dynamics_t0.5.md").read_text()
    assert tol["runs"]["real"]["overall"]["values"]["reward_events_count"] == sum(
        int((np.abs(read_episode(str(data), k).rewards[:12]) > 0.5).sum()) for k in keys)
    assert tol["runs"]["dream"]["overall"]["values"]["reward_events_count"] <= \
        result["runs"]["dream"]["overall"]["values"]["reward_events_count"]
    with pytest.raises(SystemExit):
        main(args + ["--sim-arg", "no_such_option=1"])
    with pytest.raises(SystemExit):
        main(["--data", str(data), "--compare", "real=x"])
