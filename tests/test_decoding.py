"""The sampler's decoding on hand-made logits (actionparty_env/model/sampler.py): random events at the
calibrated rate, exact zeros, the prior correction of the trained class weights, joint cell decoding,
and the reward support and two-hot targets they are trained with (training/tables.py, training/train.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from actionparty_env.grid import JUMP, NUM_MOVES, STAY, void_cells
from actionparty_env.model.sampler import decide_alive, decide_cells, decide_codes, decide_rewards, enterable_codes
from actionparty_env.model.transitions import TransitionTable
from training.tables import reward_support
from training.train import two_hot


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_cells_change_at_the_given_rate_and_only_to_another_code():
    b, rc, v = 4, 25_000, 6
    logits = torch.randn(b, rc, v, generator=gen(1))
    prev = torch.randint(0, v, (b, rc), generator=gen(2))
    for rate in (0.0, 0.03, 0.5, 1.0):
        codes, _ = decide_codes(logits, prev, torch.full((b, rc), rate), 0.0, gen())
        changed = codes != prev
        assert abs(changed.float().mean().item() - rate) < 0.01, rate
        # A changing cell takes the best code other than its previous one.
        others = logits.scatter(-1, prev[..., None], float("-inf")).argmax(-1)
        assert torch.equal(codes[changed], others[changed])


def test_a_cell_whose_code_is_forbidden_or_unknown_always_changes():
    logits = torch.zeros(1, 3, 4)
    logits[0, 0, 2] = float("-inf")  # cell 0's previous code (2) is no longer allowed there
    logits[0, :, 3] = 1.0
    prev = torch.tensor([[2, 3, -1]])  # cell 2 shows a code this game never draws
    codes, _ = decide_codes(logits, prev, torch.zeros(1, 3), 0.0, gen())
    assert codes.tolist() == [[3, 3, 3]]


def test_a_changing_cell_takes_only_a_code_the_game_changes_it_into():
    # Codes 0 floor, 1 coin, 2 wall. The code head prefers the wall, but floor only ever became a coin.
    table = TransitionTable(np.array([0 * 3 + 1, 1 * 3 + 0], np.int64))
    allowed = table.allowed(torch.arange(3), 3)
    assert allowed.tolist() == [[False, True, False], [True, False, False], [False, False, False]]
    logits = torch.tensor([[[0.0, 1.0, 5.0]] * 3])
    prev = torch.tensor([[0, 2, 2]])  # floor; a wall; a wall the sprite rule now forbids
    logits[0, 2, 2] = float("-inf")
    codes, _ = decide_codes(logits, prev, torch.ones(1, 3), 0.0, gen(), allowed)
    # floor -> coin (not wall); a wall never changes by itself; a forced change picks freely.
    assert codes.tolist() == [[1, 2, 1]]


def test_same_seed_same_decisions_other_seed_others():
    logits, prev, prob = torch.randn(2, 500, 5, generator=gen(3)), torch.zeros(2, 500, dtype=torch.long), torch.full((2, 500), 0.3)
    a, _ = decide_codes(logits, prev, prob, 0.0, gen(7))
    b, _ = decide_codes(logits, prev, prob, 0.0, gen(7))
    c, _ = decide_codes(logits, prev, prob, 0.0, gen(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("weight", [1.0, 10.0])
def test_deaths_and_respawns_at_the_calibrated_rate(weight):
    # A head trained with deaths and respawns weighted w has its flip odds multiplied by w; the sampler
    # divides them out: true death probability 0.02, respawn probability 0.1.
    n = 200_000
    alive = torch.arange(n) % 2 == 0
    true_flip = torch.where(alive, torch.tensor(0.02), torch.tensor(0.1))
    flip_logit = torch.logit(true_flip) + math.log(weight)
    alive_logit = torch.where(alive, -flip_logit, flip_logit)  # the head predicts "alive next"
    nxt = decide_alive(alive_logit, alive, weight, "calibrated", gen())
    deaths, respawns = (alive & ~nxt).sum().item() / alive.sum().item(), (~alive & nxt).sum().item() / (~alive).sum().item()
    assert abs(deaths - 0.02) < 0.002 and abs(respawns - 0.1) < 0.005
    assert torch.equal(decide_alive(alive_logit, alive, weight, "argmax", gen()), alive)  # the mode never flips


def test_rewards_are_drawn_from_the_games_payoffs_with_exact_zeros():
    support = torch.tensor([-2.0, 0.0, 1.0, 1.0])
    valid = torch.tensor([True, True, True, False])
    probs = torch.tensor([0.05, 0.75, 0.20, 0.0])
    logits = probs.clamp(min=1e-9).log().expand(100_000, 4).clone()
    logits[:, 3] = 5.0  # a padding bin is never drawn, however large its logit
    reward, expected = decide_rewards({"reward_logits": logits}, support, valid, "calibrated", gen())
    values, counts = np.unique(reward.numpy(), return_counts=True)
    assert set(values.tolist()) == {-2.0, 0.0, 1.0}
    share = dict(zip(values.tolist(), (counts / counts.sum()).tolist()))
    assert abs(share[-2.0] - 0.05) < 0.005 and abs(share[1.0] - 0.20) < 0.005
    assert torch.allclose(expected, torch.tensor(0.1), atol=1e-4)  # -2 * 0.05 + 1 * 0.2
    mode, _ = decide_rewards({"reward_logits": logits}, support, valid, "argmax", gen())
    assert (mode == 0).all()


def test_reward_support_is_exact_for_few_payoffs_and_symlog_for_many():
    support, valid = reward_support(np.array([1.0, -2.0, 1.0]), 8)
    assert support[valid].tolist() == [-2.0, 0.0, 1.0] and valid.sum() == 3
    many = np.linspace(-3.0, 7.0, 50)
    support, valid = reward_support(many, 8)
    real = support[valid]
    assert valid.all() and 0.0 in real and real.min() == pytest.approx(-3.0) and real.max() == pytest.approx(7.0)
    assert np.all(np.diff(real) > 0)


def test_two_hot_puts_the_mass_so_that_the_expectation_is_the_value():
    support = torch.tensor([[-2.0, 0.0, 1.0, 4.0, 4.0]])
    valid = torch.tensor([[True, True, True, True, False]])
    values = torch.tensor([[-2.0, 0.0, 0.25, 2.5, 4.0, 9.0]]).T  # [6, 1]
    target = two_hot(values[:, 0], support.expand(6, -1), valid.expand(6, -1))
    assert torch.allclose(target.sum(-1), torch.ones(6))
    assert target[0].tolist() == [1, 0, 0, 0, 0] and target[1].tolist() == [0, 1, 0, 0, 0]
    assert torch.allclose((target * support).sum(-1)[:5], values[:5, 0])
    assert target[5, 3] == 1  # beyond the support: its last real bin
    assert (target[:, 4] == 0).all()


def player_outputs(moves: list[int], pointer: torch.Tensor | None = None, cells: int = 9) -> dict:
    logits = torch.nn.functional.one_hot(torch.tensor([moves]), NUM_MOVES).float() * 10
    return {"move_logits": logits, "cell_logits": pointer if pointer is not None else torch.zeros(1, len(moves), cells)}


def test_joint_decoding_two_players_into_one_cell_one_wins():
    # A 3x3 map; A at (1, 0) facing E, B at (1, 2) facing W, both FORWARD into (1, 1).
    cells, facing = torch.tensor([[[1, 0], [1, 2]]]), torch.tensor([[1, 3]])
    live = torch.ones(1, 2, dtype=torch.bool)
    seen = set()
    for seed in range(40):
        new = decide_cells(player_outputs([1, 1]), cells, facing, live, live, live, 3, 3, False, "calibrated", gen(seed))
        assert (new[0, 0] != new[0, 1]).any()
        seen.add(tuple(map(tuple, new[0].tolist())))
    assert seen == {((1, 1), (1, 2)), ((1, 0), (1, 1))}  # either may win, as in the engine


def test_joint_decoding_a_respawn_lands_on_a_free_cell():
    # A live player stands on the pointer's favourite cell; the respawning player takes the next best.
    cells, facing = torch.tensor([[[0, 0], [2, 2]]]), torch.tensor([[0, 0]])
    alive, alive_next = torch.tensor([[True, False]]), torch.tensor([[True, True]])
    pointer = torch.zeros(1, 2, 9)
    pointer[0, 1, 0], pointer[0, 1, 4] = 9.0, 5.0  # cell 0 is held by player 0
    new = decide_cells(player_outputs([STAY, STAY], pointer), cells, facing, alive, alive_next,
                       torch.ones(1, 2, dtype=torch.bool), 3, 3, False, "argmax", gen())
    assert new[0].tolist() == [[0, 0], [1, 1]]
    # A live player that jumps (teleports) takes the pointer's best cell no one holds, too.
    teleport = torch.zeros(1, 2, 9)
    teleport[0, 0, 8], teleport[0, 0, 5] = 9.0, 5.0  # cell 8 is held by player 1
    jumped = decide_cells(player_outputs([JUMP, STAY], teleport), cells, facing, alive_next, alive_next,
                          torch.ones(1, 2, dtype=torch.bool), 3, 3, False, "argmax", gen())
    assert jumped[0].tolist() == [[1, 2], [2, 2]]


def test_joint_decoding_a_player_zapped_this_step_still_blocks_and_respawns_are_drawn():
    # B steps E into C's cell while C dies this step: C still holds it during the moves (the engine
    # zaps after it moves players), so B stays. Then C's cell is free for a respawn.
    cells, facing = torch.tensor([[[0, 0], [0, 1], [2, 2]]]), torch.tensor([[0, 1, 0]])
    alive, alive_next = torch.tensor([[False, True, True]]), torch.tensor([[True, True, False]])
    cells[0, 2] = torch.tensor([0, 2])
    present = torch.ones(1, 3, dtype=torch.bool)
    pointer = torch.zeros(1, 3, 9)  # a uniform pointer: the respawn is drawn among the free cells
    spots = set()
    for seed in range(60):
        new = decide_cells(player_outputs([STAY, 1, STAY], pointer), cells, facing, alive, alive_next, present,
                           3, 3, False, "calibrated", gen(seed))
        assert new[0, 1].tolist() == [0, 1]  # blocked by the player zapped this step
        spots.add(tuple(new[0, 0].tolist()))
    assert (0, 1) not in spots and len(spots) >= 6  # never onto the live player; many free cells drawn


def test_joint_decoding_a_move_into_a_wall_fails_and_no_one_respawns_on_one():
    # A 3x3 map whose middle column is wall (cells 1, 4, 7 not enterable). A at (1, 0) facing E steps
    # FORWARD into the wall and stays, facing kept by the caller; B at (1, 2) facing S steps into (2, 2).
    cells, facing = torch.tensor([[[1, 0], [1, 2], [0, 0]]]), torch.tensor([[1, 2, 0]])
    alive, alive_next = torch.tensor([[True, True, False]]), torch.ones(1, 3, dtype=torch.bool)
    enterable = torch.ones(1, 9, dtype=torch.bool)
    enterable[0, [1, 4, 7]] = False
    pointer = torch.zeros(1, 3, 9)
    pointer[0, 2, 4] = 9.0  # C's respawn favours the wall cell in the middle
    for seed in range(20):
        new = decide_cells(player_outputs([1, 1, STAY], pointer), cells, facing, alive, alive_next,
                           torch.ones(1, 3, dtype=torch.bool), 3, 3, False, "calibrated", gen(seed), enterable)
        assert new[0, 0].tolist() == [1, 0] and new[0, 1].tolist() == [2, 2]
        assert new[0, 2, 1] != 1  # never onto the wall column
    # Without the rule the move head alone decides: A walks into the wall.
    free = decide_cells(player_outputs([1, 1, STAY], pointer), cells, facing, alive, alive_next,
                        torch.ones(1, 3, dtype=torch.bool), 3, 3, False, "argmax", gen())
    assert free[0, 0].tolist() == [1, 1]


def test_enterable_codes_are_those_seen_changing_into_a_player_and_the_players_own():
    # Codes: 0 floor, 1 wall, 2 apple, 3 player sprite. Seen: floor -> player, apple -> player,
    # player -> floor, floor -> apple. The wall never becomes a player.
    next_allowed = torch.zeros(4, 4, dtype=torch.bool)
    next_allowed[0, 3] = next_allowed[2, 3] = next_allowed[3, 0] = next_allowed[0, 2] = True
    is_player = torch.tensor([False, False, False, True])
    assert enterable_codes(next_allowed, is_player).tolist() == [True, False, True, True]


def test_the_void_is_what_the_edge_reaches_and_no_player_does():
    # A 6x6 canvas with a walled 4x4 map in its top-left corner (coins' smaller builds) and one player
    # inside: the void is the L beyond the walls; with the player gone there is none; a map that fills
    # the canvas has none.
    enterable = torch.ones(1, 6, 6, dtype=torch.bool)
    enterable[0, [0, 3], :4] = enterable[0, :4, 0] = enterable[0, :4, 3] = False
    void = void_cells(enterable, torch.tensor([[[1, 1]]]), torch.tensor([[True]]))[0]
    want = torch.zeros(6, 6, dtype=torch.bool)
    want[4:, :] = want[:, 4:] = True
    assert torch.equal(void, want)
    assert not void_cells(enterable, torch.tensor([[[1, 1]]]), torch.tensor([[False]])).any()
    walled = torch.ones(1, 4, 4, dtype=torch.bool)
    walled[0, [0, 3], :] = walled[0, :, [0, 3]] = False
    assert not void_cells(walled, torch.tensor([[[1, 1]]]), torch.tensor([[True]])).any()
    # An open map (floor to the edge) where the player roams: nothing is void.
    assert not void_cells(torch.ones(1, 4, 4, dtype=torch.bool), torch.tensor([[[0, 0]]]), torch.tensor([[True]])).any()
