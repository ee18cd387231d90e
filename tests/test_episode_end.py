"""Episodes end where Melting Pot ends them (games.EpisodeEnd): its clock, checked against the real engine, and
the one-shot game's end after its interaction; in the dream envs, from the reset's seed."""
from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
import torch

from actionparty_env.env import EPISODE_END_STREAM, DreamParallelEnv
from actionparty_env.games import EpisodeEnd, get_game
from actionparty_env.matrix import MATRIX_GAMES, MatrixState, episode_over, resolve
from actionparty_env.simulator import CopyLastFrameSimulator
from actionparty_env.vector import DreamVecEnv


def real_end_steps(substrate: str, episodes: int) -> list[tuple[int, bool]]:
    """(the step each real NOOP episode ended at, whether it terminated) over `episodes` episodes."""
    from actionparty_env.real import RealParallelEnv, SeedWarning

    env = RealParallelEnv(substrate, max_cycles=10_000)
    ends = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SeedWarning)
        for seed in range(episodes):
            env.reset(seed=seed)
            for t in range(1, 10_001):
                _, _, terminations, truncations, _ = env.step({a: 0 for a in env.agents})
                if any(terminations.values()) or any(truncations.values()):
                    ends.append((t, any(terminations.values())))
                    break
    return ends


@pytest.mark.parametrize("substrate, episodes", [("running_with_scissors_in_the_matrix__repeated", 60),
                                                 ("stag_hunt_in_the_matrix__repeated", 40)])
def test_the_real_engine_ends_episodes_on_the_catalogs_clock(substrate, episodes):
    """Real episodes end (terminate) only at the catalog's chances, `first` + k `interval`, or at `max_steps`;
    the share that ends at the first chance, and the mean chances missed, are the clock's, within a binomial
    margin (p = 0.2 and 0.1 here; stag_hunt's repeated map also reaches its 2,500-step end)."""
    end = get_game(substrate).episode_end
    ends = real_end_steps(substrate, episodes)
    steps = np.array([t for t, _ in ends])
    assert len(ends) == episodes and all(terminated for _, terminated in ends)
    on_chance = (steps >= end.first) & ((steps - end.first) % end.interval == 0)
    assert (on_chance | (steps == end.max_steps)).all(), steps
    p = end.probability
    first = (steps == end.first).mean()
    assert abs(first - p) <= 3 * np.sqrt(p * (1 - p) / episodes) + 1 / episodes, (first, p)
    drawn = np.array([end.draw_step(np.random.default_rng(s)) for s in range(4000)])
    assert abs(steps.mean() - drawn.mean()) <= 4 * drawn.std() / np.sqrt(episodes), (steps.mean(), drawn.mean())


def test_the_catalogs_episode_ends_are_the_installed_settings():
    """The shipped catalog's entries are what the installed Melting Pot's settings say (training.catalog)."""
    from training.catalog import episode_end_of

    for name in ("coins", "allelopathic_harvest__open", "running_with_scissors_in_the_matrix__one_shot"):
        assert EpisodeEnd(**episode_end_of(name)) == get_game(name).episode_end, name
    assert get_game("coins").episode_end == EpisodeEnd(5000, 399, 100, 0.05)
    assert get_game("running_with_scissors_in_the_matrix__one_shot").episode_end.after_interaction


def test_draw_step_on_a_fixed_rng():
    """The clock's end step: every chance ends it with its probability (a geometric count), capped at the last
    step; no stochastic ending means the last step; the same rng, the same step."""
    end = EpisodeEnd(max_steps=1000, first=399, interval=100, probability=0.25)
    rng = np.random.default_rng(0)
    steps = np.array([end.draw_step(rng) for _ in range(20_000)])
    assert set(steps.tolist()) == {399, 499, 599, 699, 799, 899, 999, 1000}
    assert (steps == 399).mean() == pytest.approx(0.25, abs=0.01)
    assert (steps == 499).mean() == pytest.approx(0.75 * 0.25, abs=0.01)
    assert (steps == 1000).mean() == pytest.approx(0.75 ** 7, abs=0.01)  # none of the 7 chances ended it
    assert EpisodeEnd(max_steps=1000).draw_step(rng) == 1000
    assert end.draw_step(np.random.default_rng(5)) == end.draw_step(np.random.default_rng(5))


def copy_last(substrate: str):
    return functools.partial(CopyLastFrameSimulator, get_game(substrate))


def test_the_dream_vec_env_ends_each_world_at_its_clocks_step():
    """Each world of a DreamVecEnv terminates (done, not a time limit) at the step its reset's seed draws on the
    game's clock, is reset then, and its next episode ends at its new seed's step."""
    env = DreamVecEnv("coins", 2, max_cycles=20_000, device="cpu", seed=3, simulator=copy_last("coins"))
    env.reset()
    end = get_game("coins").episode_end
    due = {w: end.draw_step(np.random.default_rng([int(s), EPISODE_END_STREAM])) for w, s in enumerate(env.episode_seeds)}
    ended = {0: [], 1: []}
    actions = np.zeros(env.num_envs, np.int64)
    for t in range(1, 12_000):
        seeds = env.episode_seeds.copy()
        _, _, dones, infos = env.step(actions)
        for w in (0, 1):
            k = w * env.num_players
            if dones[k]:
                assert dones[k:k + env.num_players].all() and not infos[k]["TimeLimit.truncated"]
                ended[w].append((t, int(seeds[w])))
        if all(len(v) >= 2 for v in ended.values()):
            break
    for w, runs in ended.items():
        assert len(runs) >= 2 and runs[0][0] == due[w], (w, runs, due)
        (first_end, _), (second_end, second_seed) = runs[:2]
        assert second_end - first_end == end.draw_step(np.random.default_rng([second_seed, EPISODE_END_STREAM])), runs


def test_the_dream_env_terminates_on_the_clock_and_truncates_at_max_cycles():
    env = DreamParallelEnv("coins", max_cycles=100_000, device="cpu", simulator=copy_last("coins"))
    env.reset(seed=11)
    due = get_game("coins").episode_end.draw_step(np.random.default_rng([11, EPISODE_END_STREAM]))
    for t in range(1, due + 1):
        _, _, terminations, truncations, _ = env.step({a: 0 for a in env.agents})
        assert all(terminations.values()) == (t == due) and not any(truncations.values()), t
    assert env.agents == []
    short = DreamParallelEnv("coins", max_cycles=50, device="cpu", simulator=copy_last("coins"))
    short.reset(seed=11)
    for t in range(1, 51):
        _, _, terminations, truncations, _ = short.step({a: 0 for a in short.agents})
    assert all(truncations.values()) and not any(terminations.values())


def test_the_one_shot_game_ends_the_step_after_its_interaction_on_hand_made_states():
    """After `resolve` pays an interaction the episode is not over yet; it is over at the next step (the engine
    ends it on the frame after), and not in a world where nobody interacted."""
    game = MATRIX_GAMES["running_with_scissors_in_the_matrix__one_shot"]
    present = torch.ones(2, 2, dtype=torch.bool)
    state = MatrixState.fresh(game, (2, 2), "cpu")
    state = MatrixState(state.inventory, state.ready, state.cooling, torch.tensor([[0, 0], [-1, -1]]),
                        torch.tensor([[1.5, -1.5], [0.0, 0.0]]), state.waited)
    state, paid, on_map = resolve(state, present)
    assert paid[0].tolist() == [1.5, -1.5] and not on_map[0].any() and on_map[1].all()
    assert episode_over(state, present).tolist() == [False, False]
    state, _, on_map = resolve(state, on_map)
    assert episode_over(state, present).tolist() == [True, False]
    assert not episode_over(state, torch.zeros(2, 2, dtype=torch.bool)).any()  # absent slots end nothing


def test_the_rule_ends_real_one_shot_episodes_where_the_engine_does():
    """Along real one-shot episodes (random actions, INTERACT a third of the time), the rule's end is the real
    episode's end step in every episode the engine ended after an interaction."""
    from tests.test_matrix import rule_on_real

    present = torch.ones(1, 2, dtype=torch.bool)
    checked = 0
    for seed in range(1, 7):
        got_r, got_a, real_r, real_a = rule_on_real("running_with_scissors_in_the_matrix__one_shot", seed, 1000)
        if len(real_a) == 1000 and real_a.all():
            continue  # no interaction: the episode ran to its last step
        # The rule's removal is at the real one's step, and the episode ends the step after (the last step).
        removed = int(np.flatnonzero(~got_a.all(1))[0])
        assert removed == int(np.flatnonzero(~real_a.all(1))[0]) == len(real_a) - 2, (seed, removed, len(real_a))
        checked += 1
    assert checked >= 3, checked


def test_the_bundled_one_shot_dream_terminates_the_step_after_its_interaction_pays():
    """An interaction due in the bundled dream of the one-shot game (its state set by hand): the step that pays
    it does not end the episode, the next terminates every agent, as the engine does."""
    env = DreamParallelEnv("running_with_scissors_in_the_matrix__one_shot", device="cpu")
    env.reset(seed=0)
    sim = env.dream.sim
    state = sim.matrix_state
    sim.matrix_state = MatrixState(state.inventory, state.ready, state.cooling, torch.zeros_like(state.showing),
                                   torch.tensor([[2.5, -2.5]]), state.waited)
    _, rewards, terminations, _, infos = env.step({a: 0 for a in env.agents})
    assert list(rewards.values()) == [2.5, -2.5] and not any(terminations.values())
    assert not any(info["alive"] for info in infos.values())
    _, rewards, terminations, truncations, _ = env.step({a: 0 for a in env.agents})
    assert all(terminations.values()) and not any(truncations.values()) and env.agents == []
