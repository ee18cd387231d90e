"""Grid facts of Melting Pot that every stage shares: the cell size, directions and how avatars move.

Melting Pot draws every map cell as one 8x8 sprite; a cell is `(row, col)`; facing is 0..3 = N, E, S, W.
Movement, verified in the source (Melting Pot's lua/modules; dmlab2d = github google-deepmind/lab2d
@0947443, dmlab2d/lib/system/grid_world) and in the real engine (tests/test_movement_rules.py): every
avatar's `Avatar` component registers one move-and-turn updater at priority 150 (avatar_library.lua
`Avatar:registerUpdaters`, 155-203); a turn rotates the facing, a move is `moveRel` one cell relative to
the facing (FORWARD, STEP_RIGHT, BACKWARD, STEP_LEFT) and keeps the facing. All avatars' updaters share
one group (game_object.lua 195, updater_registry.lua 144-148, 285-303), whose pieces dmlab2d calls in
a fresh uniformly random order each step (grid.cc `Grid::RunUpdaters` 163-183, shuffled_set.h
`ShuffledElements` 53-56: std::shuffle). `moveRel` only queues a push (grid.h `PushPiece` 124-127);
after every updater has run, the queue is applied in the order it was filled (grid.cc `DoUpdate`
216-264, `ProcessQueue` 42-54), so the moves take effect one after another in that random order, before
the same step's zap beams (priority 140) and respawns (135), which are queued later. A push fails, and
is not retried, if the target cell on the piece's layer holds any piece, another avatar or a wall
(grid.cc `PushPieceActual` 545-584, `CanPlacePiece` 511-543). So a move into a cell that is occupied
when its turn comes fails: of two players wanting one cell the first in the order gets it (each half
the time); a chain of players moving into each other's cells goes through only where each one's
target has been vacated before its turn; swaps and rotations never move (`resolve_moves`, which knows
no walls: a move into a wall must come as a target equal to the own cell). A player zapped in a step
still holds its cell during that step's moves; a removed player holds none; a respawn teleports to a
random spawn point whose cell is free after the moves (grid.cc `TeleportToGroupActual` 280-353).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np
import torch

CELL = 8  # Melting Pot's sprite size in pixels: one map cell is CELL x CELL pixels
DIRS = ((-1, 0), (0, 1), (1, 0), (0, -1))  # N, E, S, W as (drow, dcol)
MOVES = {"FORWARD": 0, "STEP_RIGHT": 1, "BACKWARD": 2, "STEP_LEFT": 3}  # offset from the facing
TURNS = {"TURN_LEFT": -1, "TURN_RIGHT": 1}
# The movement head's classes: stay, or one cell FORWARD / STEP_RIGHT / BACKWARD / STEP_LEFT of the
# facing, or JUMP (a respawn or teleport: the cell comes from the pointer head).
STAY, JUMP = 0, 5
NUM_MOVES = 6


@dataclass(frozen=True)
class PlayerStates:
    """THE record of the players' state: every player's cell, facing and alive flag, and nothing else.

    `cells` [..., N, 2] (row, col), `facing` [..., N] 0..3 = N, E, S, W, `alive` [..., N] bool; all three
    numpy arrays or all three torch tensors, with the same leading dims (worlds, time, or none). Every
    record of "a frame plus each player's state" holds one (`simulator.StepResult.players`,
    `simulator.StartState.players`, `real.EngineStep.players`, `DreamSimulator.players`, the model's input
    `network.Blocks.players`), so a new field of a player's state is added here: the field, and its line
    in each helper below (the dtypes of `to`, the `infos` entry and `INFO_KEYS`, the stored dtype in
    `STORED`).
    """

    cells: Any
    facing: Any
    alive: Any

    # The dtypes the npz files store (start states, play recordings; the episode store's schema).
    STORED: ClassVar[dict[str, Any]] = {"cells": np.int16, "facing": np.int8, "alive": bool}
    # The keys of a player's PettingZoo `infos` entry that `infos` writes (an env may add others).
    INFO_KEYS: ClassVar[tuple[str, ...]] = ("cell", "facing", "alive")

    def __getitem__(self, index: Any) -> PlayerStates:
        """The states at `index` of the leading dims (e.g. `players[w]`: world w's [N, 2], [N], [N])."""
        return PlayerStates(self.cells[index], self.facing[index], self.alive[index])

    def first(self, n: int) -> PlayerStates:
        """The first `n` players."""
        return PlayerStates(self.cells[..., :n, :], self.facing[..., :n], self.alive[..., :n])

    def where(self, mask: Any, other: PlayerStates) -> PlayerStates:
        """These states where `mask` (over the leading dims, e.g. [B] worlds) is set, `other`'s elsewhere."""
        def pick(a: Any, b: Any) -> Any:
            m = mask.reshape(tuple(mask.shape) + (1,) * (a.ndim - mask.ndim))
            return torch.where(m, a, b) if isinstance(a, torch.Tensor) else np.where(m, a, b)
        return PlayerStates(pick(self.cells, other.cells), pick(self.facing, other.facing),
                            pick(self.alive, other.alive))

    def to(self, device: str | torch.device | None = None) -> PlayerStates:
        """As torch tensors on `device` in the dtypes batched code uses: cells and facing long, alive bool
        (from numpy arrays or tensors; no copy where they already are)."""
        return PlayerStates(torch.as_tensor(self.cells, device=device).long(),
                            torch.as_tensor(self.facing, device=device).long(),
                            torch.as_tensor(self.alive, device=device).bool())

    @staticmethod
    def stack(states: list[PlayerStates]) -> PlayerStates:
        """One leading dim more (torch tensors): `states[i]` is the result's `[i]`."""
        return PlayerStates(*(torch.stack([torch.as_tensor(getattr(s, k)) for s in states])
                              for k in ("cells", "facing", "alive")))

    def infos(self) -> list[dict[str, Any]]:
        """One PettingZoo `infos` entry per player, the leading dims flattened in order: `cell` (row, col),
        `facing` (0..3 = N, E, S, W) and `alive`, as Python values (one read per field from a device)."""
        cells = self.cells.reshape(-1, 2).tolist()
        facing, alive = self.facing.reshape(-1).tolist(), self.alive.reshape(-1).tolist()
        return [{"cell": (int(c[0]), int(c[1])), "facing": int(f), "alive": bool(a)}
                for c, f, a in zip(cells, facing, alive)]

    @classmethod
    def from_infos(cls, infos: dict, agents: Any) -> PlayerStates:
        """The states in the `infos` of `agents` (the inverse of `infos`), numpy int64, int64, bool."""
        return cls(np.array([infos[a]["cell"] for a in agents], np.int64).reshape(-1, 2),
                   np.array([infos[a]["facing"] for a in agents], np.int64),
                   np.array([bool(infos[a]["alive"]) for a in agents], bool))

    def arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """`{prefix + "cells": ..., prefix + "facing": ..., prefix + "alive": ...}` in the `STORED` dtypes."""
        return {prefix + k: np.asarray(getattr(self, k)).astype(dtype) for k, dtype in self.STORED.items()}

    @classmethod
    def from_arrays(cls, arrays: Any, prefix: str = "") -> PlayerStates:
        """The states `arrays` holds (written by `arrays`) as numpy int64, int64, bool; a KeyError names a
        missing field."""
        return cls(np.asarray(arrays[prefix + "cells"], np.int64), np.asarray(arrays[prefix + "facing"], np.int64),
                   np.asarray(arrays[prefix + "alive"], bool))


class HasPlayers:
    """A record that holds a `players: PlayerStates`: `cells`, `facing` and `alive` as read-only
    properties that forward to it (for the code that reads them one by one; `players` owns them)."""

    players: PlayerStates

    @property
    def cells(self) -> Any:
        return self.players.cells

    @property
    def facing(self) -> Any:
        return self.players.facing

    @property
    def alive(self) -> Any:
        return self.players.alive


@lru_cache(maxsize=None)
def dirs_tensor(device: torch.device) -> torch.Tensor:
    """DIRS as a [4, 2] tensor on `device`, made once (a host tensor made per step is a copy the host
    waits for on a GPU; grid functions keep to tensor ops and Python ints for the same reason)."""
    return torch.tensor(DIRS, device=device)


def moved_cells(cells: torch.Tensor, facing: torch.Tensor, move: torch.Tensor, rows: int, cols: int,
                torus: bool = False) -> torch.Tensor:
    """The cell one step away: cells [..., 2] (row, col), facing [...] 0..3 and move [...] in
    0..NUM_MOVES-1 (STAY and JUMP keep the cell). Off-map targets wrap on a torus, else stay put."""
    stepping = (move > STAY) & (move < JUMP)
    delta = dirs_tensor(cells.device)[(facing + (move - 1).clamp(min=0)) % 4] * stepping[..., None]
    target = cells + delta
    r, c = target[..., 0], target[..., 1]
    if torus:
        return torch.stack([r % rows, c % cols], -1)
    inside = (r >= 0) & (r < rows) & (c >= 0) & (c < cols)
    return torch.where(inside[..., None], target, cells)


def move_class(cells: torch.Tensor, facing: torch.Tensor, next_cells: torch.Tensor, rows: int, cols: int,
               torus: torch.Tensor | bool = False) -> torch.Tensor:
    """The move that took a live player from `cells` to `next_cells` (the inverse of `moved_cells`):
    STAY, a step relative to `facing` (1 + offset of MOVES), or JUMP for anything else (a teleport).
    cells, next_cells [..., 2]; facing [...]; torus [...] or bool: the map wraps (a step off one edge
    arrives at the other)."""
    delta = next_cells - cells
    dr, dc = delta[..., 0], delta[..., 1]
    wrapped = torch.stack([(dr + rows // 2) % rows - rows // 2,  # the shortest displacement on a torus
                           (dc + cols // 2) % cols - cols // 2], -1)
    if isinstance(torus, torch.Tensor):
        delta = torch.where(torus[..., None], wrapped, delta)
    elif torus:
        delta = wrapped
    is_dir = (delta[..., None, :] == dirs_tensor(cells.device)).all(-1)  # [..., 4]
    step = 1 + (is_dir.float().argmax(-1) - facing) % 4
    return torch.where((delta == 0).all(-1), STAY, torch.where(is_dir.any(-1), step, JUMP))


def cell_holders(cells: torch.Tensor, live: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """[B, R*C + 1] long: per cell, the live player standing there (its index; -1: nobody), for players at
    `cells` [B, N, 2] live where `live` [B, N]. The last column is a spare where the others park; it
    reads -1 too, so a scatter or gather of a dead player's turn lands there harmlessly."""
    b, n = live.shape
    spare = rows * cols
    # scatter_ writes, not `holder[...] = -1`: an indexed write of a Python number copies it to the
    # device first, a copy the host waits for.
    holder = torch.full((b, spare + 1), -1, dtype=torch.long, device=cells.device)
    holder.scatter_(1, torch.where(live, cells[..., 0] * cols + cells[..., 1], spare),
                    torch.arange(n, device=cells.device).expand(b, n))
    return holder.scatter(1, torch.full((b, 1), spare, device=cells.device), -1)


def resolve_moves(cells: torch.Tensor, targets: torch.Tensor, live: torch.Tensor, order: torch.Tensor,
                  rows: int, cols: int) -> torch.Tensor:
    """Melting Pot's resolution of simultaneous moves, for B worlds at once.

    cells [B, N, 2] where the players stand, targets [B, N, 2] where each wants to be (its own cell to
    stay), live [B, N] bool (dead or absent players hold no cell), order [B, N] a permutation of the
    players per world (the engine's random update order). Players move one after another in `order`;
    a player whose target is held by another live player when its turn comes stays. Returns the new
    cells [B, N, 2]: two live players never share a cell."""
    b, n = live.shape
    flat = cells[..., 0] * cols + cells[..., 1]
    want = targets[..., 0] * cols + targets[..., 1]
    spare = rows * cols
    holder = cell_holders(cells, live, rows, cols)
    # In turn order (column k: the player whose turn is k-th), gathered once. A player moves only at
    # its own turn, so there it still stands on its first cell; a target held by anyone (itself
    # included: a move onto its own cell is a stay) refuses the move.
    here, there = flat.gather(1, order), want.gather(1, order)
    wants = live.gather(1, order) & (there != here)
    went = []
    for k in range(n):
        go = wants[:, k] & (holder.gather(1, there[:, k, None]).squeeze(1) < 0)
        holder.scatter_(1, torch.where(go, here[:, k], spare)[:, None], -1)
        holder.scatter_(1, torch.where(go, there[:, k], spare)[:, None], torch.where(go, order[:, k], -1)[:, None])
        went.append(go)
    now = flat.scatter(1, order, torch.where(torch.stack(went, 1), there, here))
    return torch.stack([now // cols, now % cols], -1)


def void_cells(enterable: torch.Tensor, cells: torch.Tensor, live: torch.Tensor) -> torch.Tensor:
    """The canvas beyond the map [B, R, C] bool, for games whose map size varies per build (coins draws
    a smaller walled map on a fixed canvas, the rest black): cells reachable from the canvas edge through
    `enterable` cells [B, R, C] that no live player (cells [B, N, 2], live [B, N]) can reach. The engine
    never changes them; left free the dream spawned coins there. A world with no live player has none.
    A flood fill of one 4-neighbour step per pass: made once per reset (each pass asks the device whether
    it grew), never in a step."""
    b, rows, cols = enterable.shape

    def fill(seed: torch.Tensor) -> torch.Tensor:
        region = seed & enterable
        while True:
            p = torch.nn.functional.pad(region, (1, 1, 1, 1))
            grown = region | ((p[:, :-2, 1:-1] | p[:, 2:, 1:-1] | p[:, 1:-1, :-2] | p[:, 1:-1, 2:]) & enterable)
            if torch.equal(grown, region):
                return region
            region = grown

    edge = torch.ones_like(enterable)
    edge[:, 1:-1, 1:-1] = False
    start = torch.zeros_like(enterable)
    worlds = torch.arange(b, device=cells.device)[:, None].expand_as(live)
    start[worlds[live], cells[..., 0][live], cells[..., 1][live]] = True
    return fill(edge) & ~fill(start) & live.any(-1)[:, None, None]
