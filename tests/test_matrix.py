"""The `*_in_the_matrix` games' interactions by the game's rule (actionparty_env/matrix.py), against the
real engine and in the dream."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from actionparty_env.games import load_catalog
from actionparty_env.matrix import (MATRIX_GAMES, MatrixState, back_on_map, collect, interact, payoffs, resolve,
                                    resource_classes)
from actionparty_env.model.codebook import Codebook, unique_patches


def real_episode(substrate: str, seed: int, steps: int, share: float = 0.3):
    """A real episode of random actions (at most `steps`), INTERACT taken by a `share` of the players: frames [T+1], cells
    [T+1, N, 2], facing and alive [T+1, N], actions and rewards [T, N]."""
    from actionparty_env.real import MeltingPotEngine

    engine = MeltingPotEngine()
    step = engine.build(substrate, seed=seed)
    interact_id = load_catalog()[substrate].action_names.index("INTERACT")
    rng = np.random.default_rng(seed)
    n = engine.num_players
    frames, cells, facing, alive, actions, rewards = [step.frame], [], [], [], [], []
    for _ in range(steps):
        cells.append(step.players.cells.copy()); facing.append(step.players.facing.copy())
        alive.append(step.players.alive.copy())
        a = rng.integers(0, engine.num_actions, n)
        a[rng.random(n) < share] = interact_id
        step = engine.step(a)
        frames.append(step.frame); actions.append(a); rewards.append(step.rewards.copy())
        if step.done:  # the one-shot game ends after its interaction
            break
    cells.append(step.players.cells.copy()); facing.append(step.players.facing.copy())
    alive.append(step.players.alive.copy())
    wants = np.stack(actions) == interact_id
    return frames, np.stack(cells), np.stack(facing), np.stack(alive), wants, np.stack(rewards)


def rule_on_real(substrate: str, seed: int, steps: int):
    """The rule run along a real episode (its cells, facings, alive flags and frames): per step the rule's
    rewards and who it leaves on the map, beside the engine's."""
    game = MATRIX_GAMES[substrate]
    frames, cells, facing, alive, wants, rewards = real_episode(substrate, seed, steps)
    book = Codebook.from_patch_sets([unique_patches(f) for f in frames])
    classes = resource_classes(game, book.patches)
    codes = torch.from_numpy(np.stack([book.encode(f).reshape(-1) for f in frames]))  # [T+1, R*C]
    rows, cols = frames[0].shape[0] // 8, frames[0].shape[1] // 8
    walls = codes[0] == codes[0, 0]  # the arena's edge is wall
    cells, facing, alive = (torch.from_numpy(x) for x in (cells, facing, alive))
    n = cells.shape[1]
    state = MatrixState.fresh(game, (1, n), "cpu")
    got_rewards, got_alive = [], []
    for t in range(len(wants)):
        flat = cells[t + 1, :, 0] * cols + cells[t + 1, :, 1]
        moved = alive[t + 1] & (~alive[t] | (cells[t + 1] != cells[t]).any(-1))  # a move, or a return
        entered = torch.where(moved, classes[codes[t][flat]], -1)
        back = back_on_map(game, state, alive[t][None])
        state = collect(state, entered[None])
        blocks = (walls | (classes[codes[t]] >= 0))[None]
        state, _, _ = interact(game, game.matrices("cpu"), state, torch.from_numpy(wants[t])[None], cells[t + 1][None],
                               facing[t + 1][None], alive[t][None], blocks, rows, cols)
        state, paid, on_map = resolve(state, alive[t][None] | back)
        got_rewards.append(paid[0].numpy()); got_alive.append(on_map[0].numpy())
    return np.stack(got_rewards), np.stack(got_alive), rewards, alive[1:].numpy()


# (substrate, episodes, steps, the fewest paid player-steps to expect): random pairs meet rarely in the
# two-player `__repeated` maps (about one interaction in 500 steps), often in the arenas.
REAL_RUNS = [("stag_hunt_in_the_matrix__arena", 5, 700, 15), ("pure_coordination_in_the_matrix__arena", 5, 700, 15),
             ("stag_hunt_in_the_matrix__repeated", 8, 900, 4)]


@pytest.fixture(scope="module", params=REAL_RUNS, ids=[run[0] for run in REAL_RUNS])
def rule_and_engine(request):
    substrate, episodes, steps, fewest = request.param
    return substrate, fewest, [rule_on_real(substrate, seed, steps) for seed in range(1, episodes + 1)]


def test_the_matrix_rule_pays_whom_and_when_the_real_engine_pays(rule_and_engine):
    """Along real episodes (random actions, INTERACT a third of the time) the rule pays the same players at
    the same steps as the engine, and removes them then: every interaction but a rare one (a beam that
    passed a resource it had worn down, or a zapper whose first line the engine took in another order),
    with payoffs off only where an inventory missed a resource the frame hid (a beam drawn over it, or one
    regrown under the step: about one collection in twenty)."""
    substrate, fewest, runs = rule_and_engine
    real_events = rule_events = both = changes = off = 0
    errors, paid = [], []
    for got_r, got_a, real_r, real_a in runs:
        real, rule = real_r != 0, got_r != 0
        real_events += int(real.sum()); rule_events += int(rule.sum()); both += int((real & rule).sum())
        errors += np.abs(got_r - real_r)[real & rule].tolist()
        paid += real_r[real & rule].tolist()
        changes += int((real_a[1:] != real_a[:-1]).any(1).sum())  # steps someone leaves or returns
        off += int((got_a != real_a).any(1).sum())
    errors, paid = np.array(errors), np.array(paid)
    # Margins from 15 episodes a game (the engine does not replay a seed, so each run sees new ones): per 3
    # episodes, shared events 0.75-1.0 of either side's, off steps 0-0.36 of the changes, exact payoffs
    # 0.5-0.88 of the shared, all within 25%.
    assert real_events >= fewest, real_events  # interactions happened
    assert off <= 0.4 * changes + 2, (off, changes)  # removals and returns at the same steps
    assert both >= 0.7 * max(real_events, rule_events), (both, real_events, rule_events)
    assert (errors < 1e-4).mean() >= 0.25 and (errors <= 0.25 * np.abs(paid)).mean() >= 0.9, errors


def test_matrix_payoffs_on_hand_made_inventories():
    game = MATRIX_GAMES["stag_hunt_in_the_matrix__arena"]
    row, column = payoffs(game.matrices("cpu"), torch.tensor([[3.0, 1.0], [1.0, 1.0], [1.0, 0.0]]),
                          torch.tensor([[1.0, 1.0], [4.0, 0.0], [0.0, 1.0]]))
    # r = (3/4, 1/4), c = (1/2, 1/2): r A = (7/2, 1/2), r B = (3, 2); then a stag (C) against a hare (D)
    assert row.tolist() == pytest.approx([2.0, 3.0, 0.0])
    assert column.tolist() == pytest.approx([2.5, 2.0, 2.0])
    scissors = MATRIX_GAMES["running_with_scissors_in_the_matrix__arena"]
    row, column = payoffs(scissors.matrices("cpu"), torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0]]))
    assert (row.item(), column.item()) == (10.0, -10.0)  # paper beats rock: zero-sum


def test_an_interaction_freezes_both_then_pays_and_removes_them_on_hand_made_beams():
    """Two ready players facing each other across a free cell: the zapper's beam reaches the other; both
    are frozen from the next step on, refused a beam, paid and removed `freeze` + 1 steps after it, and back after
    `respawn_after` + 1 steps off the map. A beam at an unready player does nothing."""
    game = MATRIX_GAMES["stag_hunt_in_the_matrix__arena"]
    rows, cols = 5, 5
    cells = torch.tensor([[[2, 0], [2, 2]]])
    facing = torch.tensor([[1, 3]])  # east, west
    everyone = torch.ones(1, 2, dtype=torch.bool)
    blocks = torch.zeros(1, rows * cols, dtype=torch.bool)
    state = MatrixState.fresh(game, (1, 2), "cpu")
    fire = torch.tensor([[True, False]])
    unready, fired, _ = interact(game, game.matrices("cpu"), state, fire, cells, facing, everyone, blocks, rows, cols)
    assert fired.tolist() == [[True, False]] and not unready.frozen().any()
    state = collect(state, torch.tensor([[0, 1]]))  # each steps onto a resource: ready
    state, _, beam = interact(game, game.matrices("cpu"), state, fire, cells, facing, everyone, blocks, rows, cols)
    assert beam.view(rows, cols)[2].tolist() == [False, True, False, False, False]  # drawn up to the one it hits
    assert state.frozen().all() and state.inventory.tolist() == [[[1.0, 1.0], [1.0, 1.0]]]
    for step in range(game.freeze + 1):  # the beam's step and `freeze` more
        state, paid, on_map = resolve(state, everyone)
        assert not paid.any() and on_map.all() and state.frozen().all(), step
        state, fired, _ = interact(game, game.matrices("cpu"), state, torch.ones(1, 2, dtype=torch.bool), cells,
                                   facing, everyone, blocks, rows, cols)
        assert not fired.any()
    state, paid, on_map = resolve(state, everyone)
    row, column = payoffs(game.matrices("cpu"), torch.tensor([2.0, 1.0]), torch.tensor([1.0, 2.0]))
    assert paid[0].tolist() == pytest.approx([row.item(), column.item()]) and not on_map.any()
    for _ in range(game.beam.respawn_after):
        assert not back_on_map(game, state, on_map).any()
        state, paid, on_map = resolve(state, on_map)
    assert back_on_map(game, state, on_map).all()


def test_the_bundled_dream_pays_interactions_by_the_rule():
    """In the bundled dream of stag_hunt_in_the_matrix__arena nobody is paid but the pairs of an interaction,
    `freeze` + 1 steps after its beam, the payoffs of the inventories the rule counted, and they leave the map
    then; while the result shows both keep their cells and facings."""
    from actionparty_env.env import DreamWorlds

    game = MATRIX_GAMES["stag_hunt_in_the_matrix__arena"]
    worlds = DreamWorlds("stag_hunt_in_the_matrix__arena", num_worlds=2, device="cpu")
    worlds.reset([0, 1])
    sim = worlds.sim
    interact_id = worlds.game.action_names.index("INTERACT")
    rng = np.random.default_rng(0)
    due, paid_pairs = {}, 0
    for t in range(70):
        before = sim.players
        showing = sim.matrix_state.showing.clone()
        actions = rng.integers(0, worlds.game.num_actions, (2, sim.num_players))
        actions[rng.random(actions.shape) < 0.3] = interact_id
        out = sim.step(torch.as_tensor(actions))
        state = sim.matrix_state
        held = showing > 0
        assert torch.equal(out.cells[held], before.cells[held]) and torch.equal(out.facing[held], before.facing[held])
        started = (state.showing == game.freeze) & (showing < 0)
        for w, p in started.nonzero().tolist():
            due[(w, p)] = (t + game.freeze + 1, state.payout[w, p].item())
        for w, p in (out.rewards != 0).nonzero().tolist():
            step, pay = due.pop((w, p))
            assert step == t and out.rewards[w, p].item() == pytest.approx(pay) and not out.alive[w, p]
            paid_pairs += 1
    assert all(step >= 70 for step, _ in due.values())  # every result due by now was paid
    assert paid_pairs >= 2, paid_pairs


if __name__ == "__main__":
    import sys
    for seed in range(1, 1 + int(sys.argv[3])):
        got_r, got_a, real_r, real_a = rule_on_real(sys.argv[1], seed, int(sys.argv[2]))
        bad_r = np.flatnonzero((np.abs(got_r - real_r) > 1e-4).any(1))
        bad_a = np.flatnonzero((got_a != real_a).any(1))
        print(sys.argv[1], seed, "real reward events", int((real_r != 0).sum()), "rule", int((got_r != 0).sum()),
              "reward steps off", bad_r[:10].tolist(), "alive steps off", bad_a[:10].tolist())
        for t in bad_r[:6]:
            print("  t", t, "rule", np.round(got_r[t], 3).tolist(), "real", np.round(real_r[t], 3).tolist())
