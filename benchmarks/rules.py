"""The game's movement rules, and a checker of whether consecutive player states follow an action.

Melting Pot's movement (all 49 substrates): FORWARD, BACKWARD, STEP_LEFT and STEP_RIGHT move one cell
relative to the player's facing and keep the facing; TURN_LEFT and TURN_RIGHT rotate the facing and
keep the cell; every other action (NOOP, zaps, interactions) keeps both. A move does not happen when
its target cell blocks it. The checker accepts "unchanged" for a move only where the real rules could
have blocked it there, decided from the frame before the step:
- the target is off the map (maps that wrap, `view["torus"]` in the catalog, wrap instead);
- a player is drawn on the target cell before or after the step (an occupied cell, or a cell two
  players raced for: Melting Pot resolves simultaneous moves in a random order);
- the target cell shows a patch that is not known to be passable. Passable patches are learned from
  real episodes (`RuleChecker.fit`): those where real moves into a free cell went through at least as
  often as they were blocked (floors, grass, apples...). Walls, counters and trees never pass, and
  neither do patches never entered in the real episodes (a wall in a state not seen before), so an
  unknown patch may block: lenient to the run scored, never unfair to the real game.
Mechanics beyond these rules break the checker and are reported, not hidden: predator_prey's stamina
stops moves and turns anywhere, fruit_market's and factory_commons' SHOVE/PULL move other players,
and a zap can freeze or remove a player mid-step (removed players are not scored).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from actionparty_env.model.codebook import CELL, frame_to_cells

DIRS = np.array([(-1, 0), (0, 1), (1, 0), (0, -1)])  # N, E, S, W as (drow, dcol)
MOVES = {"FORWARD": 0, "STEP_RIGHT": 1, "BACKWARD": 2, "STEP_LEFT": 3}  # offset from facing
TURNS = {"TURN_LEFT": -1, "TURN_RIGHT": 1}
OTHER, MOVE, TURN = 0, 1, 2  # action kinds


def rule_outcome(action_names, actions, cells, facing, map_shape: tuple[int, int] | None = None,
                 torus: bool = False):
    """What each action does under the game's rules if nothing blocks it: (cells, facing, kind), kind
    OTHER (neither moves nor turns), MOVE or TURN. Arrays [..., N]; on a torus map (map_shape given)
    moves wrap around the edges."""
    names = np.asarray(action_names)[np.asarray(actions)]
    move_off = np.vectorize(lambda a: MOVES.get(a, -1), otypes=[np.int64])(names)
    turn = np.vectorize(lambda a: TURNS.get(a, 0), otypes=[np.int64])(names)
    direction = DIRS[(np.asarray(facing) + np.maximum(move_off, 0)) % 4]
    new_cells = np.where((move_off >= 0)[..., None], np.asarray(cells) + direction, cells)
    if torus and map_shape is not None:
        new_cells = new_cells % np.asarray(map_shape)
    new_facing = (np.asarray(facing) + turn) % 4
    kind = np.where(move_off >= 0, MOVE, np.where(turn != 0, TURN, OTHER))
    return new_cells, new_facing, kind


@dataclass
class RuleChecker:
    """Checks transitions of one substrate against its movement rules (see the module doc)."""
    action_names: tuple[str, ...]
    torus: bool = False
    passable: set[bytes] = field(default_factory=set)  # patches (bytes of uint8 [8,8,3]) moves go into

    @classmethod
    def fit(cls, action_names, episodes, torus: bool = False) -> "RuleChecker":
        """Learn the passable patches from real episodes (objects with frames [T+1,H,W,3], actions
        [T,N], cells [T+1,N,2], facing [T+1,N], alive [T+1,N]; ground truth, not detections)."""
        blocked, passed = Counter(), Counter()
        for ep in episodes:
            frames, actions = np.asarray(ep.frames), np.asarray(ep.actions, np.int64)
            cells, facing, alive = np.asarray(ep.cells, np.int64), np.asarray(ep.facing, np.int64), np.asarray(ep.alive)
            rows, cols = frames.shape[1] // CELL, frames.shape[2] // CELL
            for t in range(len(actions)):
                target, _, kind = rule_outcome(action_names, actions[t], cells[t], facing[t], (rows, cols), torus)
                # Other players on the target before or after the step (the mover itself may be there after).
                others = np.zeros((len(cells[t]), rows, cols), np.int64)
                for s in (t, t + 1):
                    live = alive[s] & (cells[s] >= 0).all(-1) & (cells[s] < (rows, cols)).all(-1)
                    np.add.at(others, (slice(None), cells[s][live, 0], cells[s][live, 1]), 1)
                    for i in np.flatnonzero(live):
                        others[i, cells[s][i, 0], cells[s][i, 1]] -= 1
                patches = None
                for i in np.flatnonzero((kind == MOVE) & alive[t] & alive[t + 1]):
                    y, x = target[i]
                    if not (0 <= y < rows and 0 <= x < cols) or others[i, y, x] > 0:
                        continue
                    if patches is None:
                        patches = frame_to_cells(frames[t]).reshape(rows, cols, -1)
                    key = patches[y, x].tobytes()
                    if (cells[t + 1, i] == target[i]).all():
                        passed[key] += 1
                    elif (cells[t + 1, i] == cells[t, i]).all():
                        blocked[key] += 1
        return cls(tuple(action_names), torus, {k for k, n in passed.items() if n >= blocked[k]})

    def check(self, actions, frame, cells, facing, found, next_cells, next_facing, next_found,
              occupied, next_occupied) -> np.ndarray:
        """Whether each player's transition follows its action: bool [N].

        actions [N]; frame [H,W,3] (before the step); (cells [N,2], facing [N], found [N]) before and
        (next_*) after; occupied, next_occupied bool [R,C]: cells where any player is drawn. A player
        not found before or after does not follow."""
        rows, cols = occupied.shape
        cells, next_cells = np.asarray(cells, np.int64), np.asarray(next_cells, np.int64)
        target, turned, kind = rule_outcome(self.action_names, np.asarray(actions, np.int64), cells,
                                            np.asarray(facing, np.int64), (rows, cols), self.torus)
        same_cell = (next_cells == cells).all(-1)
        same_facing = next_facing == facing
        moved = (next_cells == target).all(-1) & same_facing
        inside = (target >= 0).all(-1) & (target < (rows, cols)).all(-1)
        ty, tx = np.where(inside, target[:, 0], 0), np.where(inside, target[:, 1], 0)
        patches = frame_to_cells(np.asarray(frame)).reshape(rows, cols, -1)
        blocks = np.array([bool(inside[i]) and patches[ty[i], tx[i]].tobytes() not in self.passable
                           for i in range(len(kind))], bool)
        could_block = ~inside | occupied[ty, tx] | next_occupied[ty, tx] | blocks
        ok = np.where(kind == MOVE, moved | (same_cell & same_facing & could_block),
                      np.where(kind == TURN, same_cell & (next_facing == turned), same_cell & same_facing))
        return ok & np.asarray(found, bool) & np.asarray(next_found, bool)
