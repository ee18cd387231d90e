"""Commons harvest's apples, eaten and regrown as the game does it (issue 12).

In the commons_harvest substrates (meltingpot/configs/substrates/commons_harvest__*.py, the `apple`
prefab; meltingpot/lua/levels/commons_harvest/components.lua, `DensityRegrow`; the shared `Edible`
component) an apple is eaten by the player that steps onto it, which gets +1 (`rewardForEating`);
nothing else in these games pays. An eaten apple waits on its cell (an "apple spot") and regrows, each
step, with a probability set by the number of live apples within an L2 distance of 2 of it
(`APPLE_RESPAWN_RADIUS`, 12 cells), one of `REGROWTH_PROBABILITIES` (the last for more): 0 with no
apple near, so a patch eaten bare never comes back, the commons' dilemma. A waiting spot shows grass,
or the bare floor (the game's "dessicated" ground) where no apple is near. Seen in the real engine
(tests/test_apples.py): the regrowth comes after the moves, and an apple regrowing under a player (who
stepped onto the spot or stood on it) is eaten at once and paid, so the frames never show it.

Why a rule: the reward head drew payoffs apart from the frame, and PPO trained in that dream was paid
+22.8 a player in the dream for what earns +12.9 in the game (`benchmarks/results/rl_h200_dyna2.md`);
regrowth left to the change head keeps no count of the neighbours, the very thing the game's players
must learn to protect. Paid by the rule, a reward happens exactly when a player steps onto an apple
(or one regrows under it), and apples regrow at the game's rate for their neighbourhood.

What the rule reads: the codebook (an apple is a code with the apple's red in it, grass and floor
the codes drawn in the ground's palette alone, all from the config) and the dream's frames. Which
cells are spots it learns at a reset (those that show an apple or grass: at an episode's first step,
every spot shows its apple); which spots hold a live apple it keeps as state, seen afresh in every
frame except where a beam or a player hides the cell. Every helper is a tensor op: no host sync, so it
runs inside the dream's step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from actionparty_env.grid import cell_holders


@dataclass(frozen=True)
class AppleRegrowth:
    """A substrate's apples: the regrowth probabilities by live apples near (the last for more), the
    radius of "near" (L2, in cells) and the reward for eating one."""
    probabilities: tuple[float, ...]
    radius: float = 2.0
    reward: float = 1.0


APPLE_REGROWTH = {
    "commons_harvest__open": AppleRegrowth((0.0, 0.0025, 0.005, 0.025)),
    "commons_harvest__closed": AppleRegrowth((0.0, 0.001, 0.005, 0.025)),
    "commons_harvest__partnership": AppleRegrowth((0.0, 0.001, 0.005, 0.025)),
}
APPLE_RED = (214, 88, 88)                         # the apple sprite's "*"
GRASS_PALETTE = ((158, 194, 101), (170, 207, 112))  # the grass sprite's two colours
FLOOR_PALETTE = ((220, 205, 185), (210, 195, 175))  # the floor's (and dessicated ground's)


def apple_regrowth_of(substrate: str) -> AppleRegrowth | None:
    """The substrate's apples, None where it has no density-regrown apples."""
    return APPLE_REGROWTH.get(substrate)


def _drawn_in(patches: np.ndarray, palette) -> np.ndarray:
    """[V] bool: which codes (`patches` uint8 [V, 8, 8, 3]) use only the palette's colours."""
    pixels = patches.reshape(len(patches), -1, 1, 3)
    return (pixels == np.asarray(palette, np.uint8)[None, None]).all(-1).any(-1).all(-1)


@dataclass(frozen=True)
class AppleCodes:
    """Which of a game's codes (game-local indices) show what: `apple` [V] bool, the bare `grass` and
    `floor`, and `new_apple`, the code a regrown apple is drawn with (the apple on grass)."""
    apple: torch.Tensor
    grass: int
    floor: int
    new_apple: int

    def to(self, device) -> AppleCodes:
        return AppleCodes(self.apple.to(device), self.grass, self.floor, self.new_apple)


def apple_codes(patches: np.ndarray) -> AppleCodes | None:
    """The game's apple, grass and floor codes among `patches` uint8 [V, 8, 8, 3]; None where the
    codebook lacks one of them (the rule then stays off)."""
    pixels = patches.reshape(len(patches), -1, 1, 3)
    apple = (pixels == np.asarray(APPLE_RED, np.uint8)).all(-1).any((1, 2))
    grass, floor = np.flatnonzero(_drawn_in(patches, GRASS_PALETTE)), np.flatnonzero(_drawn_in(patches, FLOOR_PALETTE))
    if not apple.any() or not len(grass) or not len(floor):
        return None
    on_grass = apple & (pixels == np.asarray(GRASS_PALETTE, np.uint8)[None, None]).all(-1).any((1, 2))
    new_apple = int(np.flatnonzero(on_grass if on_grass.any() else apple)[0])
    return AppleCodes(torch.from_numpy(apple), int(grass[0]), int(floor[0]), new_apple)


def neighbourhood(radius: float) -> torch.Tensor:
    """float [1, 1, k, k]: the cells within L2 distance `radius` of the centre, the centre itself not
    counted (the Lua's `queryDisc`), as a convolution kernel."""
    r = int(math.floor(radius))
    offsets = torch.arange(-r, r + 1, dtype=torch.float32)
    disc = (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius ** 2).float()
    disc[r, r] = 0.0
    return disc[None, None]


def live_neighbours(live: torch.Tensor, disc: torch.Tensor) -> torch.Tensor:
    """[B, R, C] long: per cell, the live apples (`live` [B, R, C] bool) in its neighbourhood (`disc`,
    `neighbourhood`'s; the map's edge is walls, so nothing beyond it counts)."""
    counts = F.conv2d(live[:, None].to(disc.dtype), disc, padding=disc.shape[-1] // 2)
    return counts[:, 0].round().long()


def regrowth_probability(probabilities: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """The regrowth probability of a waiting spot with `counts` live apples near (any shape), from the
    table `probabilities` [K] (the last for more)."""
    return probabilities[counts.clamp(max=len(probabilities) - 1)]


@dataclass(frozen=True)
class AppleRule:
    """Everything the rule reads, on the dream's device, made once (a step that copied a table to the
    device could not be recorded as a CUDA graph)."""
    regrowth: AppleRegrowth
    codes: AppleCodes
    disc: torch.Tensor           # neighbourhood(regrowth.radius)
    probabilities: torch.Tensor  # regrowth.probabilities

    @staticmethod
    def of(regrowth: AppleRegrowth, codes: AppleCodes, device="cpu") -> AppleRule:
        return AppleRule(regrowth, codes.to(device), neighbourhood(regrowth.radius).to(device),
                         torch.tensor(regrowth.probabilities, device=device))


@dataclass(frozen=True)
class AppleState:
    """Per world, over the cells [B, R*C]: which are apple spots, and which of those hold a live apple."""
    spots: torch.Tensor
    live: torch.Tensor

    @staticmethod
    def at_start(codes: AppleCodes, frame: torch.Tensor) -> AppleState:
        """From a real start frame (game code indices [B, R*C], -1: a code the game never draws): the
        spots are the cells that show an apple or grass (grass grows on spots alone), which is every spot
        at an episode's first step; later, a spot eaten bare with no apple near shows floor and is missed
        (it could only come back if an apple regrew near it)."""
        index, known = frame.clamp(min=0), frame >= 0
        apples = codes.apple[index] & known
        return AppleState(apples | (known & (index == codes.grass)), apples)

    def where(self, worlds: torch.Tensor, other: AppleState) -> AppleState:
        """This state in `worlds` [B] bool, `other`'s elsewhere."""
        pick = worlds[:, None]
        return AppleState(torch.where(pick, self.spots, other.spots), torch.where(pick, self.live, other.live))


def seen_live(codes: AppleCodes, state: AppleState, frame: torch.Tensor, is_player: torch.Tensor) -> torch.Tensor:
    """[B, R*C] the live apples as `frame` (game code indices [B, R*C]) shows them: an apple code is
    one, grass, floor or a player (who cannot stand on a live apple) none; a cell hidden by anything
    else (a beam) keeps what `state` last saw there."""
    index = frame.clamp(min=0)
    known = frame >= 0
    ground = (index == codes.grass) | (index == codes.floor) | is_player[index]
    return torch.where(known & codes.apple[index], True, torch.where(known & ground, False, state.live)) & state.spots


def apple_step(rule: AppleRule, state: AppleState, frame: torch.Tensor, is_player: torch.Tensor,
               cells: torch.Tensor, eating: torch.Tensor, rows: int, cols: int,
               generator: torch.Generator | None, regrow: bool = True
               ) -> tuple[torch.Tensor, AppleState, torch.Tensor]:
    """One step of the apples, after the players' moves: `frame` the frame before the step (game code
    indices [B, R*C]), `cells` [B, N, 2] the players' cells after their moves, `eating` [B, N] who may
    eat (alive after the step and present). A player on a live apple eats it; then every waiting spot
    regrows at its neighbourhood's rate (`regrow`: draw the regrowth; False: none, the "argmax"
    decoding), and one regrowing under a player is eaten at once.
    Returns (rewards [B, N], the state after the step, the code each spot shows next [B, R*C]: an apple
    code (the one it had, or the new apple's), grass, or floor where no apple is near; -1 off the spots)."""
    b, n = eating.shape
    codes = rule.codes
    live = seen_live(codes, state, frame, is_player)
    flat = cells[..., 0] * cols + cells[..., 1]
    on = cell_holders(cells, eating, rows, cols)[:, :-1] >= 0
    eaten = live & on
    live = live & ~eaten
    if regrow:
        near = live_neighbours(live.view(b, rows, cols), rule.disc).view(b, -1)
        prob = torch.where(state.spots & ~live, regrowth_probability(rule.probabilities, near), 0.0)
        sprout = torch.rand(prob.shape, device=prob.device, generator=generator) < prob
    else:
        sprout = torch.zeros_like(live)
    eaten = eaten | (sprout & on)
    live = live | (sprout & ~on)
    rewards = rule.regrowth.reward * eaten.gather(1, flat.clamp(0, rows * cols - 1)).float() * eating
    near = live_neighbours(live.view(b, rows, cols), rule.disc).view(b, -1)
    index = frame.clamp(min=0)
    apple_now = torch.where(codes.apple[index] & (frame >= 0), index, codes.new_apple)
    ground = torch.where(near > 0, codes.grass, codes.floor)
    shows = torch.where(state.spots, torch.where(live, apple_now, ground), -1)
    return rewards, AppleState(state.spots, live), shows
