"""The RL benchmark (benchmarks/rl.py): episode accounting, the transfer statistics, equal PPO updates
in both arms, and one tiny end-to-end run (real Melting Pot, a tiny dream checkpoint)."""
import json

import numpy as np
import pytest

from benchmarks import rl
from tests.fake_worlds import ScriptedWorlds


def test_episode_returns_count_each_worlds_first_episode_per_player_on_eval_seeds():
    env = ScriptedWorlds(num_worlds=2, max_cycles=4)
    returns = rl.episode_returns(env, lambda obs: np.zeros(len(obs), int), episodes=3, seed=1000)
    # world 0 runs 4 steps: players earn 4 and 8 (mean 6); world 1 ends after 2: 2 and 4 (mean 3), and what
    # it earns after its auto-reset is not counted; the third episode is world 0 of the second batch.
    assert returns.tolist() == [6.0, 3.0, 6.0]
    # episode i starts from seed + i * players: the evaluation seeds no training episode may share
    assert env.started_seeds == [1000, 1002, 1004, 1006]


def test_focal_returns_count_the_focal_player_who_alone_acts_by_the_policy():
    env = ScriptedWorlds(num_worlds=2, max_cycles=4)
    policy, background = (lambda obs: np.full(len(obs), 3)), (lambda obs: np.full(len(obs), 1))
    returns = rl.episode_returns(env, policy, episodes=3, seed=1000, background=background)
    # episode i's focal player is i % 2: episode 0 is player 0 of world 0 (4 steps x 1), episode 1 player 1
    # of world 1 (ends after 2 steps: 2 x 2), episode 2 player 0 of world 0 of the second batch (4 x 1)
    assert returns.tolist() == [4.0, 4.0, 4.0]
    first_batch = np.stack(env.actions[:4])  # [steps, worlds, players]
    assert (first_batch[:, 0, 0] == 3).all() and (first_batch[:, 0, 1] == 1).all()
    assert (first_batch[:, 1, 1] == 3).all() and (first_batch[:, 1, 0] == 1).all()


def test_transfer_ratio_and_exploitation_gap_on_known_returns():
    random, real = np.array([-1.0, 1, -1, 1]), np.array([3.0, 5, 3, 5])
    dream_in_real, dream_in_dream = np.array([1.0, 3, 1, 3]), np.array([5.0, 7, 5, 7])
    s = rl.summary({"random": {"real": random, "dream": random}, "real": {"real": real, "dream": real},
                    "dream": {"real": dream_in_real, "dream": dream_in_dream}})
    value, lo, hi = s["transfer_ratio"]
    assert value == pytest.approx(0.5) and lo <= 0.5 <= hi  # (2 - 0) / (4 - 0)
    value, lo, hi = s["exploitation_gap"]
    assert value == pytest.approx(1.0) and lo <= 1.0 <= hi  # (6 - 2) / (4 - 0)
    assert s["real_beats_random"]
    assert s["arms"]["real"]["real"]["mean"] == 4.0
    assert s["arms"]["real"]["real"]["se"] == pytest.approx(np.std(real, ddof=1) / 2)


def test_no_transfer_ratio_when_real_training_learned_nothing():
    same = np.array([0.0, 0.0, 0.0])
    s = rl.summary({arm: {"real": same, "dream": same} for arm in rl.ARMS})
    assert s["transfer_ratio"][0] is None and s["exploitation_gap"][0] is None
    assert not s["real_beats_random"]
    assert "undefined" in rl._interval(s["transfer_ratio"])


def test_ppo_arms_get_the_same_samples_per_update_whatever_their_slots():
    settings = rl.PPOSettings(rollout=64, minibatches=4)
    few, many = settings.make(ScriptedWorlds(1, 8), 0, "cpu"), settings.make(ScriptedWorlds(4, 8), 0, "cpu")
    assert few.n_steps * few.n_envs == many.n_steps * many.n_envs == 64
    assert few.n_steps == 32 and many.n_steps == 8  # fewer slots collect longer stretches
    assert few.batch_size == many.batch_size == 16


def test_unequal_budgets_flags_arms_whose_timesteps_differ_by_more_than_five_percent():
    def training(real: int, dream: int) -> dict:
        return {"real": {"timesteps": real}, "dream": {"timesteps": dream}}

    assert not rl.unequal_budgets(training(204_800, 204_800))
    assert not rl.unequal_budgets(training(200_000, 204_800))  # 2.3%: whole PPO updates round the budget
    assert rl.unequal_budgets(training(208_000, 319_744))  # session 11's clean_up arms, capped by wall clock
    assert rl.unequal_budgets(training(372_096, 195_296))


@pytest.mark.slow
def test_benchmark_rl_end_to_end_on_coins(coins_checkpoint, tmp_path, one_thread):
    out = tmp_path / "results"
    argv = ["--game", "coins", "--timesteps", "16", "--rollout", "8", "--episode", "4", "--dream-worlds", "1",
            "--real-worlds", "1", "--eval-episodes", "2", "--curve-points", "1", "--curve-episodes", "1",
            "--checkpoint", str(coins_checkpoint), "--device", "cpu", "--work", str(tmp_path / "work"),
            "--out-dir", str(out), "--tag", "t"]
    assert rl.main(argv) == 0
    result = json.loads((out / "rl_t_coins.json").read_text())
    for scores in (result, result["focal"]):  # self-play and focal-vs-background
        assert set(scores["returns"]) == set(rl.ARMS)
        assert all(len(scores["returns"][arm][where]) == 2 for arm in rl.ARMS for where in ("real", "dream"))
    for arm in rl.TRAINED:
        training = result["training"][arm]
        assert training["timesteps"] >= 16 and training["seeds_shared_with_eval"] == 0
        assert len(training["real_scores"]) == 1  # the curve point
        # SB3's per-update log lands in the work folder, one row per update
        assert (tmp_path / "work" / "coins" / f"{arm}_log" / "progress.csv").read_text().count("\n") >= 2
    assert (out / "rl_t_coins.png").stat().st_size > 0
    assert (out / "rl_t.md").read_text().count("| coins | 2 |") == 2  # the self-play and the focal table
    # scoring again from the saved policies, without training
    assert rl.main(argv + ["--train"]) == 0


@pytest.mark.slow
def test_benchmark_rl_scenario_end_to_end_on_coins(coins_checkpoint, tmp_path, one_thread):
    """--background rl_mix: trained and scored as the focal player among rl_mix players, labelled so."""
    out, work = tmp_path / "results", tmp_path / "work"
    argv = ["--game", "coins", "--background", "rl_mix", "--timesteps", "16", "--rollout", "16", "--episode", "4",
            "--dream-worlds", "1", "--real-worlds", "1", "--eval-episodes", "2", "--curve-points", "0",
            "--checkpoint", str(coins_checkpoint), "--device", "cpu", "--work", str(work), "--out-dir", str(out),
            "--tag", "s"]
    assert rl.main(argv) == 0
    result = json.loads((out / "rl_s_coins.json").read_text())
    assert result["background"]["policy"] == "rl_mix" and result["background"]["focal_players"] == 1
    assert "focal" not in result  # no random-background table: the background is rl_mix
    assert all(len(result["returns"][arm][where]) == 2 for arm in rl.ARMS for where in ("real", "dream"))
    for arm in rl.TRAINED:
        assert result["training"][arm]["slots"] == 1 and result["training"][arm]["background"] == "rl_mix"
    table = (out / "rl_s.md").read_text()
    assert "Focal among rl_mix background players" in table and table.count("| coins | 2 |") == 1
    # policies trained among rl_mix are not scored in self-play, nor the other way round
    with pytest.raises(SystemExit, match="trained as 1 focal player"):
        rl.main([a for a in argv if a not in ("--background", "rl_mix")] + ["--train"])
    with pytest.raises(SystemExit):
        rl.main(argv + ["--focal", "2"])  # coins has 2 players: one focal at most
