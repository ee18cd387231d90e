"""Clean Up's river and orchard, polluted, cleaned and regrown as the game does it (issue 12).

In clean_up (meltingpot/configs/substrates/clean_up.py; meltingpot/lua/levels/clean_up/components.lua)
the river's dirt containers (the map's 'H' and 'F' cells, `RIVER_CELLS`) are clean or dirty, and the
orchard's apple spots ('B' and 'T', `APPLE_CELLS`) hold an apple or wait. Each step, in this order
(the scene's updates, then the players' updaters by priority; found against the engine):
- `AppleGrow`: every waiting spot grows an apple with probability `max_apple_growth` x min(1, (dirt
  fraction - depletion) / (restoration - depletion)): at most 5% a step with a clean river, none once
  40% of it is dirty (the episode starts at 79 of 147 dirty, so nobody eats before somebody cleans).
  An apple growing under a player (where it stood before its move) is eaten at once: +1, never shown.
- `DirtSpawner`: from the 51st step of the episode on, with probability 0.5 one clean container drawn
  at random turns dirty.
- The moves, then `Edible`: a player that steps onto a live apple eats it: +1 (so a player may eat two
  apples in a step). Apples are all the game pays.
- `Cleaner`: a live player whose cleaning timer is 0 and who takes FIRE_CLEAN fires a beam (the
  `Zapper`'s geometry, `zaps.beam_paths`: `length` cells ahead, `radius` lines each side) and sets the
  timer to `cooldown`, else counts the timer down. The beam stops at walls and at the first dirt on
  each line, which it cleans; players do not stop it (no avatar component answers a `cleanHit`).

Why a rule: clean_up is the public-goods game of Melting Pot: what a policy must learn is that the
orchard grows only while somebody cleans the river. The reward head and the change head cannot keep
count of the river's dirt; the rule does, so the dream pays what the game pays for the river the
players keep.

What the rule reads: the map (the config's, `CLEAN_UP_MAP`), the codebook (`CleanUpCodes`: a dirty
container is a code equal to the dirt's translucent green over a clean water code, an apple a code with
the apple's red, a cleaning beam a code equal to its translucent blue over another code) and the
dream's frames; the state (`CleanUpState`) is seen afresh in every frame except where a player or a
beam hides a cell. The delay of the dirt counts from the reset (start states at a recorded episode's
step 50 wait 50 steps more than the game would). Every helper is a tensor op: no host sync.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from actionparty_env.grid import PlayerStates, cell_holders
from actionparty_env.zaps import beam_paths, fire_clock

FIRE_CLEAN = "FIRE_CLEAN"
# The map of meltingpot/configs/substrates/clean_up.py (ASCII_MAP), one fixed map for every episode.
CLEAN_UP_MAP = """\
WWWWWWWWWWWWWWWWWWWWWWWWWWWWWW
WHFFFHFFHFHFHFHFHFHFHHFHFFFHFW
WHFHFHFFHFHFHFHFHFHFHHFHFFFHFW
WHFFHFFHHFHFHFHFHFHFHHFHFFFHFW
WHFHFHFFHFHFHFHFHFHFHHFHFFFHFW
WHFFFFFFHFHFHFHFHFHFHHFHFFFHFW
W==============+~FHHHHHHf====W
W   P    P      ===+~SSf     W
W     P     P   P  <~Sf  P   W
W             P   P<~S>      W
W   P    P         <~S>   P  W
W               P  <~S>P     W
W     P           P<~S>      W
W           P      <~S> P    W
W  P             P <~S>      W
W^T^T^T^T^T^T^T^T^T;~S,^T^T^TW
WBBBBBBBBBBBBBBBBBBBssBBBBBBBW
WBBBBBBBBBBBBBBBBBBBBBBBBBBBBW
WBBBBBBBBBBBBBBBBBBBBBBBBBBBBW
WBBBBBBBBBBBBBBBBBBBBBBBBBBBBW
WWWWWWWWWWWWWWWWWWWWWWWWWWWWWW"""
RIVER_CELLS = "HF"   # river with a dirt container ('F' starts dirty)
APPLE_CELLS = "BT"   # a potential apple
DIRT_COLOUR = (2, 245, 80, 50)          # the dirt's sprite, RGBA over the water
CLEAN_BEAM_COLOUR = (99, 223, 242, 175)  # the Cleaner's beam, RGBA over what it crosses
APPLE_RED = (212, 80, 57)               # clean_up's apple sprite's "*"


@dataclass(frozen=True)
class CleanUpRules:
    """The config's numbers: the Cleaner's beam, the orchard's growth and the river's pollution."""
    cooldown: int = 2
    length: int = 3
    radius: int = 1
    max_apple_growth: float = 0.05
    depletion: float = 0.4
    restoration: float = 0.0
    apple_reward: float = 1.0
    dirt_spawn_probability: float = 0.5
    dirt_spawn_delay: int = 50


CLEAN_UP = {"clean_up": CleanUpRules()}


def clean_up_rules_of(substrate: str) -> CleanUpRules | None:
    """The substrate's river and orchard, None where it has none."""
    return CLEAN_UP.get(substrate)


def map_cells(chars: str) -> np.ndarray:
    """bool [R*C]: the cells of `CLEAN_UP_MAP` drawn with one of `chars`."""
    return np.array([ch in chars for row in CLEAN_UP_MAP.splitlines() for ch in row])


def overlay_pairs(patches: np.ndarray, rgba: tuple[int, int, int, int], tolerance: int = 2) -> np.ndarray:
    """int [K, 2]: the pairs (under, over) of codes among `patches` uint8 [V, 8, 8, 3] where `over` is
    `under` with the colour `rgba` drawn over it (alpha blended, within `tolerance` per channel)."""
    flat = patches.reshape(len(patches), -1).astype(np.int16)
    alpha = rgba[3] / 255
    blended = np.rint(patches.astype(np.float32) * (1 - alpha)
                      + np.asarray(rgba[:3], np.float32) * alpha).reshape(len(patches), -1).astype(np.int16)
    close = (np.abs(blended[:, None] - flat[None]) <= tolerance).all(-1)
    return np.argwhere(close)


@dataclass(frozen=True)
class CleanUpCodes:
    """Which of the game's codes (game-local indices, [V] bool each) show what: `water` a clean
    container's river, `dirt` a dirty one, `apple` an apple, `beam` a cleaning beam over anything."""
    water: torch.Tensor
    dirt: torch.Tensor
    apple: torch.Tensor
    beam: torch.Tensor

    def to(self, device) -> CleanUpCodes:
        return CleanUpCodes(*(t.to(device) for t in (self.water, self.dirt, self.apple, self.beam)))


def clean_up_codes(patches: np.ndarray) -> CleanUpCodes | None:
    """The river's, the apples' and the beam's codes among `patches` uint8 [V, 8, 8, 3]; None where the
    codebook lacks water with its dirt (the rule then stays off). A codebook may lack the apple (no
    training episode grew one): `apple` is then all False."""
    def mask(indices: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.isin(np.arange(len(patches)), indices))

    dirty = overlay_pairs(patches, DIRT_COLOUR)
    if not len(dirty):
        return None
    apple = (patches.reshape(len(patches), -1, 3) == np.asarray(APPLE_RED, np.uint8)).all(-1).any(-1)
    beam = overlay_pairs(patches, CLEAN_BEAM_COLOUR)
    return CleanUpCodes(mask(dirty[:, 0]), mask(dirty[:, 1]), torch.from_numpy(apple), mask(beam[:, 1]))


@dataclass(frozen=True)
class CleanUpRule:
    """Everything the rule reads, on the dream's device, made once (a step that copied a table to the
    device could not be recorded as a CUDA graph)."""
    rules: CleanUpRules
    codes: CleanUpCodes
    river: torch.Tensor   # [R*C] bool, the dirt containers
    spots: torch.Tensor   # [R*C] bool, the apple spots

    @staticmethod
    def of(rules: CleanUpRules, codes: CleanUpCodes, device="cpu") -> CleanUpRule:
        river, spots = (torch.from_numpy(map_cells(c)).to(device) for c in (RIVER_CELLS, APPLE_CELLS))
        return CleanUpRule(rules, codes.to(device), river, spots)


@dataclass(frozen=True)
class CleanUpState:
    """Per world: `dirt` and `apples` [B, R*C] (which containers are dirty, which spots hold an apple),
    `cooling` [B, N] each player's cleaning timer, `steps` [B] the steps since the reset."""
    dirt: torch.Tensor
    apples: torch.Tensor
    cooling: torch.Tensor
    steps: torch.Tensor

    @staticmethod
    def at_start(rule: CleanUpRule, frame: torch.Tensor, num_players: int) -> CleanUpState:
        """From a real start frame (game code indices [B, R*C], -1: a code the game never draws)."""
        index, known = frame.clamp(min=0), frame >= 0
        b = len(frame)
        return CleanUpState(rule.codes.dirt[index] & known & rule.river, rule.codes.apple[index] & known & rule.spots,
                            torch.zeros(b, num_players, dtype=torch.long, device=frame.device),
                            torch.zeros(b, dtype=torch.long, device=frame.device))

    def fields(self) -> tuple[torch.Tensor, ...]:
        return self.dirt, self.apples, self.cooling, self.steps

    def where(self, worlds: torch.Tensor, other: CleanUpState) -> CleanUpState:
        """This state in `worlds` [B] bool, `other`'s elsewhere."""
        return CleanUpState(*(torch.where(worlds.view(-1, *[1] * (a.dim() - 1)), a, o)
                              for a, o in zip(self.fields(), other.fields())))


def seen(rule: CleanUpRule, state: CleanUpState, frame: torch.Tensor, hidden: torch.Tensor
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """(dirt, apples) [B, R*C] as `frame` (game code indices [B, R*C]) shows them; a cell whose code is
    `hidden` ([V] bool: a player, a beam) or unknown keeps what `state` last saw there."""
    index = frame.clamp(min=0)
    shown = (frame >= 0) & ~hidden[index]
    dirt = torch.where(shown, rule.codes.dirt[index], state.dirt) & rule.river
    apples = torch.where(shown, rule.codes.apple[index], state.apples) & rule.spots
    return dirt, apples


def growth_probability(rules: CleanUpRules, dirt: torch.Tensor, river: torch.Tensor) -> torch.Tensor:
    """[B]: each waiting spot's chance to grow an apple this step, from the dirt `dirt` [B, R*C] on the
    containers `river` [R*C] (`AppleGrow`)."""
    fraction = dirt.sum(-1).float() / river.sum().float()
    interpolation = ((fraction - rules.depletion) / (rules.restoration - rules.depletion)).clamp(max=1.0)
    return (rules.max_apple_growth * interpolation).clamp(min=0.0)


def clean_up_step(rule: CleanUpRule, state: CleanUpState, frame: torch.Tensor, hidden: torch.Tensor,
                  before: PlayerStates, cells: torch.Tensor, facing: torch.Tensor, alive: torch.Tensor,
                  clean: torch.Tensor, rows: int, cols: int, walls: torch.Tensor,
                  generator: torch.Generator | None, random_events: bool = True
                  ) -> tuple[torch.Tensor, CleanUpState, torch.Tensor]:
    """One step of the river and the orchard: `frame` the frame before the step (game code indices
    [B, R*C]), `before` the players before it, `cells` [B, N, 2] and `facing` [B, N] after the moves,
    `alive` [B, N] who stands on the map after them, `clean` [B, N] whose action is FIRE_CLEAN, `walls`
    [B, R*C] the cells a beam stops at. `random_events`: draw the apples' growth and the dirt (False:
    none, the "argmax" decoding). Returns (rewards [B, N], the state after the step, beam [B, R*C] the
    cells a cleaning beam is drawn on)."""
    b, n = alive.shape
    rules = rule.rules
    dirt, apples = seen(rule, state, frame, hidden)
    meals = torch.zeros(b, n, device=dirt.device)
    if random_events:  # the scene's updates come before the players' moves
        grow = growth_probability(rules, dirt, rule.river)[:, None]
        sprout = rule.spots & ~apples & (torch.rand(apples.shape, device=dirt.device, generator=generator) < grow)
        under = cell_holders(before.cells, before.alive, rows, cols)[:, :-1] >= 0
        meals = meals + sprout.gather(1, _flat(before.cells, rows, cols)).float() * before.alive
        apples = apples | (sprout & ~under)
        spawns = (state.steps >= rules.dirt_spawn_delay) & (
            torch.rand(b, device=dirt.device, generator=generator) < rules.dirt_spawn_probability)
        clean_river = rule.river & ~dirt
        pick = torch.rand(dirt.shape, device=dirt.device, generator=generator).masked_fill(~clean_river, -1.0).argmax(-1)
        dirt = dirt | torch.zeros_like(dirt).scatter_(1, pick[:, None], (spawns & clean_river.any(-1))[:, None])
    on = cell_holders(cells, alive, rows, cols)[:, :-1] >= 0  # a player on a live apple after the moves eats it
    meals = meals + (apples.gather(1, _flat(cells, rows, cols)) & alive).float()
    apples = apples & ~on
    fires, cooling = fire_clock(rules.cooldown, state.cooling, alive, clean)
    at, beam = beam_paths(rules.length, rules.radius, fires, cells, facing, walls | dirt, rows, cols)
    cleaned = torch.zeros(b, rows * cols + 1, dtype=torch.bool, device=dirt.device)
    cleaned.scatter_(1, at.view(b, -1), True)
    dirt = dirt & ~cleaned[:, :-1]
    return rules.apple_reward * meals, CleanUpState(dirt, apples, cooling, state.steps + 1), beam


def _flat(cells: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """[B, N]: each cell's index row * cols + col (clamped: a dead player's cell is arbitrary)."""
    return (cells[..., 0] * cols + cells[..., 1]).clamp(0, rows * cols - 1)
