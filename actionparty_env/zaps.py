"""Zapping, as the game does it (issues 12 and 13): who fires, whom the beam removes, when they return.

In the games whose avatars carry Melting Pot's `Zapper` with `removeHitPlayer`
(meltingpot/lua/modules/avatar_library.lua; the numbers are each substrate config's), a live player
whose cooldown timer is at 0 and who takes FIRE_ZAP fires a beam and sets the timer to `cooldown`;
while the timer is above 0 it counts down a step instead, and FIRE_ZAP does nothing. The beam
(dmlab2d's `Grid::HitBeamActual`, after the step's moves) is `2 * radius + 1` lines, each stopped at the
first cell that blocks it (a wall, a player, the map's edge): the line ahead starts at the cell in
front and runs `length` cells; the side line at distance r starts beside the zapper and runs
`length - r + 1` cells forward (and a side line blocked at its first cell stops that side's wider
ones). A player a line stops at is hit: removed from the map at once, and back, at a free spawn
point (the dream's pointer head picks it), `respawn_after` steps later. Nothing else kills a player
in these games, so where the rule applies the alive head decides nothing.

Why a rule: the alive head drew removals about a third as often as the game (commons_harvest__open,
`benchmarks/results/dynamics_h200_apples.md`: 7 deaths against 17 in 100 steps, and respawns as few),
so a zap in the dream rarely did what it does in the game, and a removed player came back when it
pleased. By the rule the dream removes exactly the players the game's beam would reach, from the
players' own cells, facings and actions, and returns them on the game's clock.

Simplified, and rare: beams of one step all see the players where the moves left them (the engine
resolves them one after another in its updater order, so a player removed by one beam no longer
stops another's), and every live zapper fires, even one removed by an earlier beam that step. The
frame shows the beam where dmlab2d draws it (a line's cells before the one that stops it) and nowhere
else (`zap_beam_code`: the code drawn all in the beam's colour). Every helper is a tensor op: no host sync.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from actionparty_env.grid import cell_holders, dirs_tensor

FIRE_ZAP = "FIRE_ZAP"
BEAM_COLOUR = (252, 252, 106)  # the Zapper's default beamColor, which these games keep


@dataclass(frozen=True)
class Zapper:
    """A substrate's `Zapper` settings: the cooldown (steps), the beam's length and radius (cells) and
    the steps a removed player waits (`framesTillRespawn`)."""
    cooldown: int
    length: int
    radius: int
    respawn_after: int


ZAPPERS = {
    "commons_harvest__open": Zapper(cooldown=2, length=3, radius=1, respawn_after=4),
    "commons_harvest__closed": Zapper(cooldown=1, length=4, radius=1, respawn_after=100),
    "commons_harvest__partnership": Zapper(cooldown=1, length=4, radius=1, respawn_after=100),
    "clean_up": Zapper(cooldown=10, length=3, radius=1, respawn_after=50),
}


def zapper_of(substrate: str) -> Zapper | None:
    """The substrate's zapper, None where zaps do not remove players (or are not modelled)."""
    return ZAPPERS.get(substrate)


@dataclass(frozen=True)
class ZapState:
    """Per world and player [B, N]: the cooldown timer, and the steps a removed player has waited."""
    cooling: torch.Tensor
    waited: torch.Tensor

    @staticmethod
    def fresh(shape: tuple[int, ...], device) -> ZapState:
        """Ready to fire, nobody waiting: a new episode's (a player dead at a reset waits from 0)."""
        return ZapState(torch.zeros(shape, dtype=torch.long, device=device),
                        torch.zeros(shape, dtype=torch.long, device=device))

    def fields(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cooling, self.waited

    def where(self, worlds: torch.Tensor, other: ZapState) -> ZapState:
        """This state in `worlds` [B] bool, `other`'s elsewhere."""
        pick = worlds[:, None]
        return ZapState(torch.where(pick, self.cooling, other.cooling), torch.where(pick, self.waited, other.waited))


def beam_lines(length: int, radius: int, cells: torch.Tensor, facing: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The lines of a beam `length` cells long and `radius` wide from players at `cells` [B, N, 2] facing
    `facing` [B, N]: (cells [B, N, L, K, 2], in [B, N, L, K] bool) for its L = 2 * radius + 1 lines (the
    one ahead first, then right and left at distance 1, 2, ...) of at most K = length cells each, in the
    order the beam travels."""
    dirs = dirs_tensor(cells.device)
    forward, right = dirs[facing], dirs[(facing + 1) % 4]            # [B, N, 2]
    lines = torch.arange(2 * radius + 1, device=cells.device)
    distance = (lines + 1) // 2                                      # 0 ahead, then 1, 1, 2, 2, ...
    side = torch.where(lines % 2 == 1, 1, -1) * distance             # right positive, left negative
    start = torch.where((lines == 0)[:, None], (cells + forward)[:, :, None],
                        cells[:, :, None] + side[:, None] * right[:, :, None])  # [B, N, L, 2]
    k = torch.arange(length, device=cells.device)
    line = start[..., None, :] + k[:, None] * forward[:, :, None, None, :]
    reach = torch.where(lines == 0, length, length - distance + 1)
    return line, (k < reach[:, None]).expand(line.shape[:-1])


def beam_paths(length: int, radius: int, fires: torch.Tensor, cells: torch.Tensor, facing: torch.Tensor,
               stops: torch.Tensor, rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the beams of the firing players go, as dmlab2d's `Grid::HitBeamActual` runs them: `fires`
    [B, N], `cells` [B, N, 2] and `facing` [B, N] after the step's moves, `stops` [B, R*C] the cells a
    beam stops at (and hits). Returns (stopped_at [B, N, L], the cell (row * cols + col) each line of a
    firing player stops at, R*C where it stops at none or at the map's edge; beam [B, R*C] bool, the
    cells a beam is drawn on: a line's cells before the one that stops it)."""
    b, n = fires.shape
    line, inside = beam_lines(length, radius, cells, facing)          # [B, N, L, K, 2], [B, N, L, K]
    out = (line[..., 0] < 0) | (line[..., 0] >= rows) | (line[..., 1] < 0) | (line[..., 1] >= cols)
    flat = (line[..., 0].clamp(0, rows - 1) * cols + line[..., 1].clamp(0, cols - 1))
    stop = inside & (stops.gather(1, flat.view(b, -1)).view(flat.shape) | out)
    first = stop.long().argmax(-1)                                     # the first stop on each line (0 if none)
    stopped = stop.any(-1)
    at = torch.where(stopped & ~out.gather(-1, first[..., None]).squeeze(-1),
                     flat.gather(-1, first[..., None]).squeeze(-1), rows * cols)  # [B, N, L]
    # a line goes on where a player fires; a side line blocked at its first cell stops that side's wider ones
    goes = fires[..., None].expand_as(at)
    if radius > 1:
        side = (stopped & (first == 0))[:, :, 1:].view(b, n, radius, 2)
        shut = torch.cat([torch.zeros_like(side[:, :, :1]), side[:, :, :-1]], 2).cummax(2).values
        goes = goes & torch.cat([torch.ones_like(at[:, :, :1], dtype=torch.bool), ~shut.reshape(b, n, -1)], 2)
    k = torch.arange(length, device=cells.device)
    drawn = inside & goes[..., None] & (k < torch.where(stopped, first, length)[..., None])
    beam = torch.zeros(b, rows * cols + 1, dtype=torch.bool, device=cells.device)
    beam.scatter_(1, torch.where(drawn, flat, rows * cols).view(b, -1), True)
    return torch.where(goes, at, rows * cols), beam[:, :-1]


def zap_beams(zapper: Zapper, fires: torch.Tensor, cells: torch.Tensor, facing: torch.Tensor, on_map: torch.Tensor,
              blocks: torch.Tensor, rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the zaps go (`beam_paths`; a zap stops at walls, `blocks` [B, R*C], and at players, `on_map`
    [B, N] those standing on the map): (hits [B, zapper, player] bool, whom each beam hits; beam [B, R*C]
    bool, the cells a beam is drawn on)."""
    b, n = fires.shape
    holders = cell_holders(cells, on_map, rows, cols)                  # [B, R*C + 1], -1: nobody
    at, beam = beam_paths(zapper.length, zapper.radius, fires, cells, facing, blocks | (holders[:, :-1] >= 0), rows, cols)
    hit = holders.gather(1, at.view(b, -1)).view(at.shape) + 1        # 0: nobody
    onehot = torch.zeros(b, n, n + 1, dtype=torch.bool, device=cells.device)
    onehot.scatter_(2, hit, True)
    return onehot[..., 1:], beam


def zap_beam_code(patches: np.ndarray) -> int | None:
    """The index of the code drawn all in the beam's colour among `patches` uint8 [V, 8, 8, 3], None if
    the codebook has none."""
    found = np.flatnonzero((patches.reshape(len(patches), -1, 3) == np.asarray(BEAM_COLOUR, np.uint8)).all((1, 2)))
    return int(found[0]) if len(found) else None


def fire_clock(cooldown: int, cooling: torch.Tensor, alive: torch.Tensor, wants: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """A beam's cooldown timer as the Lua counts it (`Zapper`, `Cleaner`): a live player whose timer is 0
    and who `wants` [B, N] to fire fires and sets it to `cooldown`; one whose timer is above 0 counts it
    down instead. Returns (who fires, the timers after the step)."""
    ready = cooling == 0
    fires = alive & ready & wants
    return fires, torch.where(alive, torch.where(ready, torch.where(wants, cooldown, 0), cooling - 1), cooling)


def zap_step(zapper: Zapper, state: ZapState, alive: torch.Tensor, zap: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, ZapState]:
    """The clocks, before the moves: `alive` [B, N] now, `zap` [B, N] whose action is FIRE_ZAP.
    Returns (who fires [B, N], who returns to the map this step [B, N], the state with the cooldown
    counted; `after_hits` counts the waits)."""
    fires, cooling = fire_clock(zapper.cooldown, state.cooling, alive, zap)
    returns = ~alive & (state.waited > zapper.respawn_after)  # off the map respawn_after + 1 steps (the engine's count)
    return fires, returns, ZapState(cooling, state.waited)


def after_hits(state: ZapState, alive_next: torch.Tensor) -> ZapState:
    """The waits once this step's removals and returns are known: a removed player counts the steps it
    has been off the map; a live one 0."""
    return ZapState(state.cooling, torch.where(alive_next, 0, state.waited + 1))
