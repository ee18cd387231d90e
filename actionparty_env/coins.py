"""Coins' payoffs, paid as the game pays them (issue 12).

In coins (meltingpot/lua/levels/coins/components.lua, `Coin:onEnter`; the payoffs are the substrate
config's defaults) a player that steps onto a coin collects it: it gets +1, and when the coin has the
other player's colour (a mismatch) every other player gets -2. Nothing else in the game pays. A
collected coin waits invisibly under the player and regrows at random later, so the cell a player
leaves shows the floor (the dream's frames already do: in 150 random steps of 8 bundled dreams, 1 of
38 collected coins was drawn again after its collector left).

Why a rule: the reward head draws payoffs apart from the frame, so the dream paid where no coin was
collected and paid nothing where one was (under the same actions as the real game, 1 reward event
where the game paid 8: `benchmarks/results/dynamics_h200_eval.md`); PPO trained in that dream found
what it pays (+3.56 in the dream against +0.28 in the game, `rl_h200_eval.md`). Paid by the rule, a
reward happens exactly when the dream's frame shows a coin collected.

A waiting coin under a player who stands still regrows there too (at `regrow_rate` a step, in one of
the two players' colours at random), and the engine then pays it at once as if it had been stepped onto
(the Lua's contact fires when the coin's layer comes back; seen in the real engine, about once in 2,000
player-steps); the frame never shows it, so the dream draws it: a standing player collects a coin at that
rate, of a random player's colour. (Every interior cell holds a coin but the two spawn points: the dream
does not know them and counts them as coins.)

The rule reads only the codebook: a coin is a code a player can step onto (`sampler.enterable_codes`)
that is neither a player's sprite nor the bare floor (all black); its colour is the direction of its
chroma (each pixel's RGB less its grey level), which is the colour of the player it belongs to: the
config draws both players and their coins from one palette per colour (`COIN_PALETTES`), and the coin
is that colour darkened, which keeps the direction. Every helper is a tensor op: no host sync, so it
runs inside the dream's step.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class CoinPayoffs:
    """The Coin component's payoffs (coins.py's `get_prefabs` defaults)."""
    self_for_match: float = 1.0
    self_for_mismatch: float = 1.0
    other_for_match: float = 0.0
    other_for_mismatch: float = -2.0
    regrow_rate: float = 0.0005  # ChoiceCoinRegrow's, per waiting coin and step


COIN_PAYOFFS = {"coins": CoinPayoffs()}


def coin_payoffs_of(substrate: str) -> CoinPayoffs | None:
    """The substrate's coin payoffs, None where it has no coins."""
    return COIN_PAYOFFS.get(substrate)


def floor_codes(patches: np.ndarray) -> np.ndarray:
    """[V] bool: which of the codes (`patches` uint8 [V, 8, 8, 3]) show the bare floor (all black)."""
    return patches.reshape(len(patches), -1).max(1) == 0


def coin_codes(patches: np.ndarray, enterable: torch.Tensor, is_player: torch.Tensor) -> torch.Tensor:
    """[V] bool over a game's codes: which show a coin. `patches` uint8 [V, 8, 8, 3] (the game's codes'
    patches), `enterable` [V] (may a player step onto it), `is_player` [V] (a player's sprite)."""
    return enterable & ~is_player & ~torch.from_numpy(floor_codes(patches)).to(enterable.device)


def colour_directions(patches: np.ndarray) -> torch.Tensor:
    """float [V, 3]: each code's colour as a unit chroma vector (the sum over its pixels of RGB less the
    pixel's grey level; grey, black and white pixels add nothing)."""
    rgb = torch.from_numpy(patches.reshape(len(patches), -1, 3).astype(np.float32))
    return F.normalize((rgb - rgb.mean(-1, keepdim=True)).sum(1), dim=-1)


def coin_matches(coin_colour: torch.Tensor, player_colour: torch.Tensor) -> torch.Tensor:
    """[B, N] bool: does the coin player n stepped onto (`coin_colour` [B, N, 3]) have its own colour,
    i.e. is n the player of the closest colour (`player_colour` [B, N, 3])."""
    closest = torch.einsum("bjc,bnc->bjn", coin_colour, player_colour).argmax(-1)
    return closest == torch.arange(closest.shape[1], device=closest.device)


def coin_rewards(payoffs: CoinPayoffs, collected: torch.Tensor, match: torch.Tensor) -> torch.Tensor:
    """Every player's reward [B, N] of one step: `collected` [B, N] bool (the player collected a coin),
    `match` [B, N] bool (that coin has the player's colour)."""
    c = collected.float()
    own = c * torch.where(match, payoffs.self_for_match, payoffs.self_for_mismatch)
    to_others = c * torch.where(match, payoffs.other_for_match, payoffs.other_for_mismatch)  # [B, N] by collector
    return own + to_others.sum(1, keepdim=True) - to_others
