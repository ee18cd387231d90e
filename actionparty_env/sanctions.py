"""Graduated sanctions, as the game applies them (issue 12): a zapped player is marked and frozen, a
marked player zapped again is removed.

In externality_mushrooms__dense and allelopathic_harvest__open the avatars' `Zapper` removes nobody
(`removeHitPlayer` False); Melting Pot's `GraduatedSanctionsMarking` (meltingpot/lua/modules/
avatar_library.lua; the numbers are each substrate config's) decides what a hit does:
- A live player whose cooldown timer is 0 and who takes FIRE_ZAP fires the zap beam (`zaps.beam_paths`'
  geometry; walls, players and externality_mushrooms' mushrooms stop it) and sets the timer to `cooldown`.
- A hit on an unmarked player marks it and freezes it: moves, turns and beams refused for `freeze` steps.
- A hit on a marked player unmarks it and removes it from the map on the next step, to return at a spawn
  point on the zaps' clock (`respawn_after`).
- A marked player on the map for `recovery` steps since its last hit is unmarked.
While its beams are refused a player's timer is held at `cooldown` + 1, so it waits a cooldown more after.
Nothing else removes a player in these games, so where the rule applies the alive head decides nothing.
territory's maps use the same marking, but their beams also claim and break walls: not ruled yet.

Why a rule: the alive head removed players 1.7 times as often as the game (`dynamics_cpu_mushrooms.md`),
and a removal is a second hit within the marking's memory, which no 3-step window can count. Every helper
is a tensor op: no host sync.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from actionparty_env.grid import cell_holders
from actionparty_env.zaps import Zapper, beam_paths, fire_clock


@dataclass(frozen=True)
class Sanctions:
    """A substrate's zapper (cooldown, beam, `framesTillRespawn`) and `GraduatedSanctionsMarking`'s hit logic:
    the first hit's freeze (steps) and the steps a mark lasts (`recoveryTime`)."""
    beam: Zapper
    freeze: int = 25
    recovery: int = 50


SANCTIONS = {"externality_mushrooms__dense": Sanctions(Zapper(cooldown=3, length=3, radius=1, respawn_after=50)),
             "allelopathic_harvest__open": Sanctions(Zapper(cooldown=4, length=3, radius=1, respawn_after=25))}


def sanctions_of(substrate: str) -> Sanctions | None:
    """The substrate's graduated sanctions, None where it has none (or they are not modelled)."""
    return SANCTIONS.get(substrate)


@dataclass(frozen=True)
class SanctionState:
    """Per world and player [B, N]: marked (bool), the steps since its last hit, the steps its moves and beams
    are still refused (`frozen`), the beam's cooldown timer, leaving (bool: removed on the next step), and
    the steps a removed player has been off the map."""
    marked: torch.Tensor
    since: torch.Tensor
    frozen: torch.Tensor
    cooling: torch.Tensor
    leaving: torch.Tensor
    waited: torch.Tensor

    @staticmethod
    def fresh(shape: tuple[int, int], device) -> SanctionState:
        zeros = torch.zeros(shape, dtype=torch.long, device=device)
        no = torch.zeros(shape, dtype=torch.bool, device=device)
        return SanctionState(no, zeros, zeros, zeros, no, zeros)

    def fields(self) -> tuple[torch.Tensor, ...]:
        return self.marked, self.since, self.frozen, self.cooling, self.leaving, self.waited

    def where(self, worlds: torch.Tensor, other: SanctionState) -> SanctionState:
        """This state in `worlds` [B] bool, `other`'s elsewhere."""
        return SanctionState(*(torch.where(worlds[:, None], a, b) for a, b in zip(self.fields(), other.fields())))


def sanction_clock(rule: Sanctions, state: SanctionState, alive: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Before the moves, from the state after the last step and `alive` [B, N] now: (who is on the map for
    this step's moves [B, N]: the live ones not leaving, and those back from their wait; who is refused its
    move and turn [B, N])."""
    back = ~alive & (state.waited > rule.beam.respawn_after)
    return (alive & ~state.leaving) | back, state.frozen > 0


def sanction_step(rule: Sanctions, state: SanctionState, on_map: torch.Tensor, zap: torch.Tensor, cells: torch.Tensor,
                  facing: torch.Tensor, blocks: torch.Tensor, rows: int, cols: int
                  ) -> tuple[SanctionState, torch.Tensor, torch.Tensor]:
    """After the moves: `on_map` [B, N] who stands on the map (`sanction_clock`'s), `zap` [B, N] whose action
    is FIRE_ZAP, `cells` [B, N, 2] and `facing` [B, N] after the moves, `blocks` [B, R*C] the cells besides
    players that stop a beam. Returns (the state after the step, who is on the map after it [B, N], the
    cells a beam is drawn on [B, R*C])."""
    b, n = zap.shape
    free = on_map & (state.frozen == 0)
    fires, cooling = fire_clock(rule.beam.cooldown, state.cooling, free, zap)
    holders = cell_holders(cells, on_map, rows, cols)
    at, beam = beam_paths(rule.beam.length, rule.beam.radius, fires, cells, facing, blocks | (holders[:, :-1] >= 0),
                          rows, cols)
    hit = holders.gather(1, at.view(b, -1)).view(b, -1) + 1  # [B, N * L], 0: nobody
    hits = torch.zeros(b, n + 1, dtype=torch.long, device=zap.device).scatter_add_(1, hit, torch.ones_like(hit))
    hits = hits[:, 1:]  # [B, N] how many beams reached each player
    marks = hits > 0
    removed = marks & (state.marked | (hits > 1))  # a second hit, this step or since the mark
    since = torch.where(marks, 0, state.since + on_map.long())
    marked = torch.where(marks, ~removed, state.marked) & (since < rule.recovery)
    frozen = torch.where(marks, torch.where(removed, 1, rule.freeze), (state.frozen - 1).clamp(min=0))
    cooling = torch.where(frozen > 0, rule.beam.cooldown + 1, cooling)
    waited = torch.where(on_map, 0, state.waited + 1)
    return SanctionState(marked, since, frozen, cooling, removed, waited), on_map, beam
