"""Melting Pot's stamina, counted as the game counts it (issue 13).

In predator_prey and factory_commons an avatar carries the Lua's `Stamina` component
(meltingpot/lua/levels/stamina/shared_components.lua, in the installed package): a costly action (a
move, a turn or an interaction, per game) lowers the stamina (0..18) by one, a step without one raises
it by one, and at the next step a costly action taken in the yellow or red band (or, for prey, in any
band) refuses the avatar's moves and turns for a few steps (`disallowMovementUntil`), by role. It
depends on nothing but the player's own actions, on whether it is alive (a respawn restores it) and
on its meals (below), and it builds up over up to 18 steps, longer than the world model's window: so
the dream counts it (`DreamSimulator`, model/sampler.py) and the pixel benchmark's rule checker
replays it from the real episode (benchmarks/rules.py), both with `stamina_step` and `meals`.

A predator's meal (predator_prey; meltingpot/lua/levels/predator_prey/components.lua) sets the same
freeze counter (the Avatar's `_freezeCounter`, which `StaminaState.counter` is), so `stamina_step`
counts it too, from who ate whom (`meals`):
- A predator's INTERACT fires a beam at the one cell in front of it (`PredatorInteractBeam`, priority
  140: after the step's moves, so it hits whoever stands there after them; its cooldown is never
  read). A prey hit there is eaten (it dies) unless more prey than predators stand within 3 cells of
  it (`AvatarEdible:onHit`; prey eating an acorn and players in the red band do not count).
- The eater gets `disallowMovementUntil(5)` after its move of that step: its moves and turns are
  refused for the next 4 steps, unless the stamina's own freeze starting at the next step (the
  INTERACT was costly) overwrites the counter: then 1 step in the yellow band, 6 in the red. Its beam
  stays on for those 4 steps (`showForDuration(5)`) and fires with no INTERACT: a prey stepping in
  front is eaten too, and every meal starts the freeze and the beam again.
- A predator hit by a predator's beam is always eaten; its eater loses 4 stamina and is not frozen.
- A prey eating an acorn is not frozen, whatever the game's description says. An INTERACT while it
  holds one (picked up by stepping on it) with its bar invisible (stamina >= 13), arms down and no
  INTERACT in the 5 steps before starts a 26-step meal, whose `AvatarEatingAnimation` calls
  `disallowMovementUntil(0)`: a no-op (avatar_library.lua freezes only for a count above 0). Only
  the INTERACT's stamina cost remains, as for any INTERACT.
All four checked in the real engine (Melting Pot 2.4.1; tests/test_stamina.py).

Both games draw each live avatar's stamina as a bar in the map cell north of it (the substrate
config's `_create_stamina_overlay`): `bar_codes` finds the codebook's codes that show one, which the
dream draws only there (model/sprites.py, `constrain_attached`).

Every helper of the count is a tensor op over [..., N] players: no host sync, so it runs inside the
dream's step.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from actionparty_env.grid import MOVES, TURNS, moved_cells


@dataclass(frozen=True)
class Stamina:
    """One game's stamina (the Lua's `Stamina` settings in its substrate config): freeze steps per role
    for the (green, yellow, red) bands; which action kinds are costly; the band limits. `meal_freeze`,
    `meal_cost`: a predator's meal (the module doc; 0: nobody eats). `moves_follow_actions`: nothing but
    the stamina, a meal, walls and other players refuses a move or turn in this game and live players
    never teleport, so a player the count leaves free moves and turns as its action says (predator_prey;
    not factory_commons, whose HOLD and SHOVE also freeze and move players)."""
    freeze_by_role: tuple[tuple[str, tuple[int, int, int]], ...]  # (role name part, freeze steps)
    costly: tuple[str, ...] = ("move", "turn", "interact")
    max_value: int = 18
    red: int = 1
    yellow: int = 6
    meal_freeze: int = 0  # AvatarEdible's framesToDisplayBeingEaten: the counter a prey's eater gets
    meal_cost: int = 0    # the stamina a predator's eater loses
    moves_follow_actions: bool = False
    deaths_are_meals: bool = False  # being eaten is the game's only death: the dream decides it (`eaten`)
    group_radius: int = 0  # the prey's AvatarEdible groupRadius: the disc its defenders stand in
    meal_reward: float = 0.0  # predatorRewardForEating: a predator's only reward, per prey it eats

    def freeze_steps(self, roles: tuple[str, ...]) -> torch.Tensor:
        """[N, 3] long: each player's freeze steps in the green, yellow and red bands, by its role
        (a role matching no entry never freezes)."""
        return torch.tensor([next((f for part, f in self.freeze_by_role if part in role), (0, 0, 0))
                             for role in roles], dtype=torch.long)

    def costly_actions(self, action_names: list[str]) -> torch.Tensor:
        """[A] bool: which of these actions cost stamina."""
        kinds = {"move": set(MOVES), "turn": set(TURNS), "interact": {"INTERACT"}}
        costly = set().union(*(kinds[k] for k in self.costly))
        return torch.tensor([name in costly for name in action_names], dtype=torch.bool)

    @staticmethod
    def predators(roles: tuple[str, ...]) -> torch.Tensor:
        """[N] bool: which players are predators (whose beam eats; every other player is prey)."""
        return torch.tensor(["predator" in role for role in roles], dtype=torch.bool)


# Per substrate family (the name up to "__"), from meltingpot/configs/substrates/*.py.
STAMINA: dict[str, Stamina] = {
    "predator_prey": Stamina((("predator", (0, 1, 6)), ("prey", (1, 2, 4))), meal_freeze=5, meal_cost=4,
                             moves_follow_actions=True, deaths_are_meals=True, group_radius=3, meal_reward=1.0),
    "factory_commons": Stamina((("", (0, 2, 6)),), costly=("move",)),
}


def stamina_of(substrate: str) -> Stamina | None:
    """The substrate's stamina, None where its avatars have none."""
    return STAMINA.get(substrate.split("__")[0])


# The bar's palette. Stamina levels 0..12 draw 6 pixels of the cell's bottom row (columns 1..6): green,
# yellow, then red from the left; levels 13..18 and a dead avatar draw nothing.
BAR_COLOURS = {"G": (62, 137, 72), "Y": (255, 216, 97), "R": (162, 38, 51)}
BAR_LEVELS = 13


def bar_rows() -> np.ndarray:
    """uint8 [BAR_LEVELS, 6, 3]: the bar's pixels at each visible level, as the config writes them."""
    def row(i: int) -> str:
        return "G" * max(i - 6, 0) + "Y" * (i if i < 7 else 12 - i) + "R" * max(6 - i, 0)
    return np.array([[BAR_COLOURS[ch] for ch in row(i)] for i in range(BAR_LEVELS)], np.uint8)


def bar_codes(patches: np.ndarray) -> torch.Tensor:
    """[V] bool: which of these 8x8 patches (uint8 [V, 8, 8, 3]) show a stamina bar (on whatever the
    cell holds: floor, wall, tree or another avatar; the bar is drawn over them all)."""
    bottom = np.asarray(patches)[:, 7, 1:7]  # [V, 6, 3]
    return torch.from_numpy((bottom[:, None] == bar_rows()[None]).all((-1, -2)).any(-1))


@dataclass(frozen=True)
class StaminaState:
    """What refuses each player's moves and turns, tensors [..., N]: the Lua `Stamina`'s stamina, the
    steps its update still skips (a freeze), whether the last counted step was costly; the avatar's
    freeze counter (steps of freeze left, set by the stamina and by a meal); and the steps a predator's
    beam stays on after a meal."""
    value: torch.Tensor
    skip: torch.Tensor
    last_costly: torch.Tensor
    counter: torch.Tensor
    beam: torch.Tensor

    @classmethod
    def fresh(cls, rule: Stamina, shape: tuple[int, ...], device: torch.device | str = "cpu") -> StaminaState:
        """Full stamina, no freeze, no beam: a new avatar's (or a respawned one's)."""
        zeros = torch.zeros(shape, dtype=torch.long, device=device)
        return cls(zeros + rule.max_value, zeros, zeros.bool(), zeros, zeros)

    def where(self, mask: torch.Tensor, other: StaminaState) -> StaminaState:
        """These states where `mask` (broadcast over the trailing player dim) is set, `other`'s elsewhere."""
        m = mask[..., None] if mask.ndim < self.value.ndim else mask
        return StaminaState(*(torch.where(m, a, b) for a, b in zip(self.fields(), other.fields())))

    def fields(self) -> tuple[torch.Tensor, ...]:
        return self.value, self.skip, self.last_costly, self.counter, self.beam


def meals(state: StaminaState, predators: torch.Tensor, interact: torch.Tensor, cells: torch.Tensor,
          facing: torch.Tensor, alive: torch.Tensor, alive_next: torch.Tensor, rows: int, cols: int,
          torus: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Who ate this step: (ate a prey, ate a predator) [..., N]. `predators` [N] (`Stamina.predators`),
    `interact` [..., N] whether the action is INTERACT, `cells` [..., N, 2] and `facing` [..., N] after
    the step's moves, `alive` [..., N] before the step and `alive_next` after. A live predator's beam
    fires on INTERACT or while it stays on after a meal, at the cell in front of it; a player that dies
    on that cell was eaten. Two beams on one cell in one step are both credited (the engine's random
    order picks the one that eats; rare)."""
    hit = beam_hits(state, predators, interact, cells, facing, alive, cells, rows, cols, torus)
    hit = hit & (alive & ~alive_next)[..., None, :]
    return (hit & ~predators).any(-1), (hit & predators).any(-1)


def beam_hits(state: StaminaState, predators: torch.Tensor, interact: torch.Tensor, cells: torch.Tensor,
              facing: torch.Tensor, alive: torch.Tensor, targets: torch.Tensor, rows: int, cols: int,
              torus: bool = False) -> torch.Tensor:
    """[..., eater, player] bool: whether the beam of live predator `eater` (firing on INTERACT or left on
    after a meal, at the cell in front of it: `cells`, `facing` [..., N]) falls on `targets` [..., N, 2],
    a cell per player; never on the eater itself (moved_cells keeps the cell of a step off the map)."""
    fires = predators & alive & (interact | (state.beam > 0))
    forward = torch.full_like(facing, MOVES["FORWARD"] + 1)  # moved_cells' class of FORWARD
    front = moved_cells(cells, facing, forward, rows, cols, torus)
    n = predators.shape[-1]
    return ((front[..., :, None, :] == targets[..., None, :, :]).all(-1) & fires[..., :, None]
            & ~torch.eye(n, dtype=torch.bool, device=cells.device))


def eaten(rule: Stamina, state: StaminaState, red: torch.Tensor, predators: torch.Tensor, interact: torch.Tensor,
          cells: torch.Tensor, facing: torch.Tensor, alive: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """[..., N] bool: who is eaten this step, by `AvatarEdible:onHit`, from the cells and facing after the
    step's moves (the beam hits after them) and `alive` before it: a live player on which a live
    predator's beam falls (`beam_hits`, `state` before the step) is eaten if it is a predator, and if it
    is a prey only where the prey within `rule.group_radius` of it (a disc, itself included) are no more
    than the predators there, neither counting an avatar in the red band (`red` [..., N]: the band after
    this step's stamina update, which runs before the beam: checked in the real engine). (A prey eating
    an acorn does not count either; the dream cannot see that meal, so it counts it.)"""
    hit = beam_hits(state, predators, interact, cells, facing, alive, cells, rows, cols).any(-2) & alive
    gap = (cells[..., :, None, :] - cells[..., None, :, :]).float()
    near = ((gap ** 2).sum(-1) <= rule.group_radius ** 2) & (alive & ~red)[..., None, :]  # [..., player, other]
    prey_near, predators_near = (near & ~predators).sum(-1), (near & predators).sum(-1)
    return hit & (predators | (prey_near <= predators_near))


def stamina_step(rule: Stamina, freeze_steps: torch.Tensor, state: StaminaState, costly: torch.Tensor,
                 alive: torch.Tensor, ate: tuple[torch.Tensor, torch.Tensor] | None = None
                 ) -> tuple[StaminaState, torch.Tensor]:
    """One step of every player's stamina: `freeze_steps` [N, 3] (`Stamina.freeze_steps`), `costly` [..., N]
    whether this step's action costs stamina, `alive` [..., N] alive before the step, `ate` this step's
    `meals` (None: nobody ate). Returns the state after the step and which players' moves and turns this
    step refuses [..., N]. A freeze starts where the last counted step was costly and the band's freeze
    is not 0; while it lasts the stamina is not updated (the Lua skips its update), so actions taken
    frozen cost nothing. A meal comes after the step's moves (the module doc): it refuses the next ones."""
    counter = (state.counter - 1).clamp(min=0)
    skipping = state.skip > 0
    band = torch.where(state.value < rule.red, 2, torch.where(state.value < rule.red + rule.yellow, 1, 0))
    steps = freeze_steps.expand(*band.shape, 3).gather(-1, band[..., None]).squeeze(-1)
    start = ~skipping & state.last_costly & (steps > 0)
    counter = torch.where(start, steps, counter)
    frozen = (counter > 0) & alive
    ate_prey, ate_predator = ate if ate is not None else (torch.zeros_like(alive), torch.zeros_like(alive))
    counter = torch.where(ate_prey, rule.meal_freeze, counter)
    beam = torch.where(ate_prey, rule.meal_freeze - 1, (state.beam - 1).clamp(min=0))
    # A predator's meal costs at the beam (priority 140), before the stamina's own update (priority 4).
    before = torch.where(ate_predator, (state.value - rule.meal_cost).clamp(min=0), state.value)
    skip = torch.where(skipping, state.skip - 1, torch.where(start, steps, state.skip))
    counted = skip == 0
    value = torch.where(costly, (before - 1).clamp(min=0), (before + 1).clamp(max=rule.max_value))
    after = StaminaState(torch.where(counted, value, before), skip, torch.where(counted, costly, state.last_costly),
                         counter, beam)
    # A dead avatar's stamina starts again full when it respawns.
    after = after.where(alive, StaminaState.fresh(rule, tuple(alive.shape), alive.device))
    return after, frozen
