"""Externality Mushrooms' payoffs, paid as the game pays them (issue 12).

In externality_mushrooms (meltingpot/lua/levels/externality_mushrooms/components.lua, `MushroomEating`;
the payoffs are the substrate config's) a player that steps onto a live mushroom eats it, and the
mushroom's colour says who is paid, out of the game's N players:
- red (fullInternalityZeroExternality): +1 to the eater;
- green (halfInternalityHalfExternality): 2 / N to every player, the eater included;
- blue (zeroInternalityFullExternality): 3 / (N - 1) to every other player, nothing to the eater;
- orange (negativeInternalityNegativeExternality): -1 / N to every player.
Nothing else in the game pays (a zap destroys a mushroom unpaid). The shares divide by all N players, but a
player off the map (zapped, waiting to respawn) is paid nothing, as the engine does.

Why a rule: the reward head under-paid the eating. PPO trained in that dream scored +1.50 in the real
game, random's level (+0.94), where PPO trained in the game learned to eat for +7.19
(`benchmarks/results/rl_h200_matwm2.md`). Paid by the rule, a payoff happens exactly when the dream's
frame shows a mushroom eaten, as coins' and apples' do.

The eater digests: `disallowMovementUntil(d)` (d = 10 after a green mushroom, 15 after a blue or an
orange one, 0 after a red) sets the Avatar's freeze counter to d, which the Avatar's update counts down at
the end of every step, the meal's included, so the game refuses the eater's moves and turns for the next
d - 1 steps (`digestion_step`; checked in the real engine). The model's window (3 steps) cannot count
that far. Not modelled: the spores an eaten mushroom releases and the mushrooms that spoil; the frame's
mushrooms stay the model's.

The rule reads only the codebook: a live mushroom is a code whose patch shows the mushroom sprite's cap
in one colour's palette (`shapes.MUSHROOM` and its four palettes, opaque pixels, so the ground under
the sprite does not matter). Every helper is a tensor op: no host sync, so it runs inside the step.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# The mushroom sprite's opaque cap pixels ("O" in shapes.MUSHROOM, rows 3-5) and their colour per type, in
# the order of MushroomPayoffs' fields: red, green, blue, orange (shapes.MUSHROOM_*_PALETTE).
CAP_PIXELS = ((3, 3), (3, 4), (3, 5), (4, 2), (4, 4), (4, 5), (4, 6), (5, 2), (5, 3), (5, 4), (5, 5))
CAP_COLOURS = ((239, 132, 240), (90, 224, 116), (41, 210, 227), (255, 165, 0))


@dataclass(frozen=True)
class MushroomPayoffs:
    """`MushroomEating`'s total reward per mushroom type (externality_mushrooms.py's `create_mushroom`)."""
    red: float = 1.0      # to the eater
    green: float = 2.0    # shared by every player
    blue: float = 3.0     # shared by the others
    orange: float = -1.0  # shared by every player
    digestion: tuple[int, int, int, int] = (0, 10, 15, 15)  # `digestionTimes` per type, red to orange


MUSHROOM_PAYOFFS = {"externality_mushrooms__dense": MushroomPayoffs()}


def mushroom_payoffs_of(substrate: str) -> MushroomPayoffs | None:
    """The substrate's mushroom payoffs, None where it has no mushrooms."""
    return MUSHROOM_PAYOFFS.get(substrate)


def mushroom_types(patches: np.ndarray) -> torch.Tensor:
    """[V] long over codes (`patches` uint8 [V, 8, 8, 3]): 0-3 for a live red, green, blue or orange mushroom,
    -1 for anything else."""
    rows, cols = zip(*CAP_PIXELS)
    cap = patches[:, list(rows), list(cols)]  # [V, pixels, 3]
    types = np.full(len(patches), -1, dtype=np.int64)
    for t, colour in enumerate(CAP_COLOURS):
        types[(cap == np.array(colour, dtype=np.uint8)).all(-1).all(-1)] = t
    return torch.from_numpy(types)


def mushroom_rewards(payoffs: MushroomPayoffs, eaten: torch.Tensor, present: torch.Tensor,
                     on_map: torch.Tensor) -> torch.Tensor:
    """Every player's reward [B, N] of one step: `eaten` [B, N] long (the type of the mushroom the player ate
    this step, -1 for none), `present` [B, N] bool (the game's players: the shares divide among them),
    `on_map` [B, N] bool (who is on the map after the step: only they are paid)."""
    players = present.sum(1, keepdim=True).float()
    ate = [(eaten == t).float() for t in range(4)]
    red, green, blue, orange = ate
    every = (green.sum(1, keepdim=True) * payoffs.green + orange.sum(1, keepdim=True) * payoffs.orange) / players
    to_others = blue * payoffs.blue / (players - 1).clamp(min=1)  # [B, N] by eater
    rewards = red * payoffs.red + every + to_others.sum(1, keepdim=True) - to_others
    return rewards * (present & on_map)


def digestion_step(digestion: torch.Tensor, refused: torch.Tensor, eaten: torch.Tensor,
                   on_map: torch.Tensor) -> torch.Tensor:
    """Each player's steps still refused [B, N] after this step, from those before it (`refused`: a player
    with some left was refused this step's move and turn), this step's meals (`eaten`, as `mushroom_rewards`
    takes it) and who is on the map after it (`on_map` [B, N] bool); `digestion` [4] long:
    `MushroomPayoffs.digestion` on the step's device. A meal of digestion time d refuses the next d - 1 steps;
    a player removed from the map has none left (the engine's respawn zeroes the avatar's freeze counter)."""
    digestion = digestion[eaten.clamp(min=0)]
    left = torch.where((eaten >= 0) & (digestion > 0), digestion - 1, (refused - 1).clamp(min=0))
    return left * on_map
