"""Coins' payoffs by the game's rule (actionparty_env/coins.py), against the real engine and in the dream."""
from __future__ import annotations

import numpy as np
import torch

from dataclasses import replace

from actionparty_env.coins import COIN_PAYOFFS, coin_codes, coin_matches, coin_rewards, colour_directions
from actionparty_env.model.codebook import Codebook, unique_patches
from tests.real_engine import random_real_episode


def test_the_coin_rule_pays_exactly_what_the_real_engine_pays():
    """Frames of real episodes, encoded: the rule's rewards from the codes a player stepped onto equal the
    engine's rewards at every step but those where a coin regrew under a standing player; matches and
    mismatches both among them."""
    episodes = [random_real_episode("coins", seed, 300) for seed in (1, 2, 3)]
    book = Codebook.from_patch_sets(unique_patches(f) for frames, *_ in episodes for f in frames)
    v = len(book)
    payoffs = COIN_PAYOFFS["coins"]
    seen = {"match": 0, "mismatch": 0, "regrown": 0}
    for frames, cells, _, rewards in episodes:
        codes = np.stack([book.encode(f).reshape(-1) for f in frames])
        cols = frames[0].shape[1] // 8
        flat = cells[..., 0] * cols + cells[..., 1]  # [T+1, N]
        at_players = np.take_along_axis(codes, flat, 1)  # each player's own sprite code
        is_player = torch.zeros(v, dtype=torch.bool)
        is_player[np.unique(at_players)] = True
        moved = (flat[1:] != flat[:-1])
        entered = np.take_along_axis(codes[:-1], flat[1:], 1)  # [T, N]: the code a player stepped onto
        enterable = torch.zeros(v, dtype=torch.bool)
        enterable[np.unique(entered[moved])] = True
        coins = coin_codes(book.patches, enterable, is_player)
        colour = colour_directions(book.patches)
        player_colour = torch.stack([colour[np.unique(at_players[:, n])].sum(0) for n in range(2)])
        collected = torch.from_numpy(moved) & coins[torch.from_numpy(entered)]
        match = coin_matches(colour[torch.from_numpy(entered)], player_colour.expand(len(entered), -1, -1))
        got = coin_rewards(payoffs, collected, match).numpy()
        # The one payoff the frames cannot show: a coin regrowing under a player who stands still, paid at
        # once (+1 to it; the rule draws these at the regrowth rate). Every other step is exactly the engine's.
        off = (got != rewards).any(1)
        regrown = ((rewards == 1) | (rewards == -1)) & ~moved
        assert np.array_equal(off, regrown.any(1)), np.nonzero(off)[0]
        seen["regrown"] += int(off.sum())
        seen["mismatch"] += int((rewards[~off] == -2).any(1).sum())
        seen["match"] += int(((rewards[~off] == 1).any(1) & ~(rewards[~off] == -2).any(1)).sum())
    assert seen["regrown"] <= 3, seen  # about 0.0005 a player-step: 0.9 expected in these 1,800
    assert seen["match"] > 5 and seen["mismatch"] > 5, seen


def test_coin_rewards_on_hand_made_collections():
    """Player 0 collects its own colour's coin, player 1 the other's: +1 / 0, then +1 / -2 to the owner."""
    red, blue = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 0.0, 1.0])
    players = torch.stack([red, blue])[None]  # [1, 2, 3]
    payoffs = COIN_PAYOFFS["coins"]

    def rewards(collected, coins):
        match = coin_matches(torch.stack(coins)[None], players)
        return coin_rewards(payoffs, torch.tensor([collected]), match).tolist()

    assert rewards([True, False], [red, red]) == [[1.0, 0.0]]
    assert rewards([False, True], [red, red]) == [[-2.0, 1.0]]
    assert rewards([True, True], [blue, red]) == [[-1.0, -1.0]]  # each takes the other's: +1 and -2 each
    assert rewards([True, True], [red, blue]) == [[1.0, 1.0]]
    assert rewards([False, False], [blue, red]) == [[0.0, 0.0]]


def _dream_coins(regrow_rate: float, steps: int):
    """The bundled checkpoint's coins dream on the CPU, 4 worlds of random actions, with this regrowth rate.
    Yields per step the simulator and a dict: rewards, collected (stepped onto a coin) and still (stood
    still) [B, N], the code indices before and after [B, R*C], and the player cells before and after."""
    from actionparty_env.env import DreamWorlds

    worlds = DreamWorlds("coins", num_worlds=4, device="cpu")
    worlds.reset([0, 1, 2, 3])
    sim = worlds.sim
    sim.coin_payoffs = replace(sim.coin_payoffs, regrow_rate=regrow_rate)
    rng = np.random.default_rng(0)
    cols = sim.codes.shape[2]
    for _ in range(steps):
        before = sim.code_index[sim.codes.view(4, -1)]
        cells_before = sim.players.cells.clone()
        rewards = sim.step(torch.as_tensor(rng.integers(0, 7, (4, 2)))).rewards
        cells = sim.players.cells
        entered = before.gather(1, cells[..., 0] * cols + cells[..., 1])
        moved = (cells != cells_before).any(-1)
        yield sim, {"rewards": rewards, "collected": moved & sim.is_coin[entered.clamp(min=0)], "still": ~moved,
                    "before": before, "after": sim.code_index[sim.codes.view(4, -1)],
                    "cells_before": cells_before[..., 0] * cols + cells_before[..., 1],
                    "cells": cells[..., 0] * cols + cells[..., 1]}


def test_the_bundled_dream_pays_a_coin_exactly_when_its_frame_shows_one_collected():
    """A player that moves is paid +1 exactly at the steps it steps onto a cell whose previous frame showed
    a coin, and every reward is one of the game's payoffs (coins regrow 40 times the game's rate here)."""
    collections = 0
    for _, step in _dream_coins(0.02, 50):
        rewards = step["rewards"]
        paid_own = (rewards == 1) | (rewards == -1)  # +1, or +1 - 2 when both took the other's coin
        assert torch.equal(paid_own & ~step["still"], step["collected"])
        assert set(rewards.unique().tolist()) <= {-2.0, -1.0, 0.0, 1.0}
        collections += int(step["collected"].sum())
    assert collections > 5


def test_a_coin_regrowing_under_a_standing_player_is_paid_to_it():
    """At regrowth rate 1 every player standing still collects a coin each step, of either colour."""
    stood = mismatched = 0
    for _, step in _dream_coins(1.0, 20):
        rewards = step["rewards"]
        paid_own = (rewards == 1) | (rewards == -1)
        assert torch.equal(paid_own, step["collected"] | step["still"])
        stood += int(step["still"].sum())
        mismatched += int((rewards == -2).sum() + (rewards == -1).sum())
    assert stood > 5 and mismatched > 0


def test_the_dreams_coins_regrow_at_the_games_rate_in_the_players_colours_and_stay_until_collected():
    """Away from the players, a cell changes only from the floor into a coin of one of the two players'
    colours, at the regrowth rate (here 0.02, within 4 standard deviations); a coin or a wall never
    changes; the cell a player leaves shows the floor."""
    spawns = floor_steps = 0
    for sim, step in _dream_coins(0.02, 40):
        before, after = step["before"], step["after"]
        players = torch.zeros_like(before, dtype=torch.bool)
        players.scatter_(1, torch.cat([step["cells_before"], step["cells"]], 1), True)
        changed = (before != after) & ~players
        assert (before[changed] == sim.floor_code).all()
        likeness = torch.einsum("vc,bnc->bnv", sim.colour, sim._player_colours())
        own_coins = likeness.masked_fill(~sim.is_coin, float("-inf")).argmax(-1)  # [B, 2]
        assert ((after[..., None] == own_coins[:, None, :]).any(-1) | ~changed).all()
        floor = (before == sim.floor_code) & ~players
        if sim.void is not None:
            floor &= ~sim.void
        spawns += int(changed.sum())
        floor_steps += int(floor.sum())
        left = step["cells_before"][(step["cells_before"] != step["cells"])]
        worlds = torch.arange(4)[:, None].expand(-1, 2)[(step["cells_before"] != step["cells"])]
        vacated = torch.ones_like(left, dtype=torch.bool)
        for k, (w, c) in enumerate(zip(worlds.tolist(), left.tolist())):
            vacated[k] = c not in step["cells"][w].tolist()
        assert (after[worlds[vacated], left[vacated]] == sim.floor_code).all()
    expected = 0.02 * floor_steps
    assert abs(spawns - expected) < 4 * expected ** 0.5, (spawns, expected)
