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
  often as they were blocked (floors, grass, apples...; a FROZEN player's moves are not counted), per
  role (predator_prey's tall grass lets prey in, not predators).
  Walls, counters and trees never pass, and neither do patches never entered in the real episodes (a
  wall in a state not seen before), so an unknown patch may block: lenient to the run scored, never
  unfair to the real game.

Freezes and shoves (`MECHANICS`, read from the substrates' Lua configs). Some substrates stop a
player's moves and turns for a while (the Lua's `disallowMovementUntil(n)`), or move a player by
another's action. Those depend on the game's hidden state, so `RuleChecker.situation(real)` decides,
from the REAL episode only (its actions, states and frames; never the run scored), the situation of
every player at every step: FREE (the movement rules above), FROZEN (moves and turns do nothing: the
run must keep the player's cell and facing) or UNDECIDED (not scored; its share is reported as the
checker's coverage). A run is then checked against the real situation, so a world model cannot pick
which steps are scored, and one that never moves anyone fails every FREE move and turn.
- Stamina (predator_prey, factory_commons; `actionparty_env.stamina`): the Lua's `Stamina` component is
  deterministic given the player's own actions (each costly action lowers stamina, a step without one
  restores it, and after a costly action the band of the stamina level freezes the player for 0 to 6
  steps, by role), and so are predator_prey's meals given who died in front of whose beam (a predator
  that eats a prey is frozen for the next 4 steps, or as its stamina overwrites that), so the checker
  replays both from the real episode (`meals` and `stamina_step`, the functions the dream counts them
  with) and the freezes are FROZEN steps, exactly.
- Timed freezes with a visible cause (`TimedFreeze`): a zap (allelopathic_harvest,
  externality_mushrooms, territory: 25 steps, `GraduatedSanctionsMarking`), an interaction
  (`*_in_the_matrix`: 16 + 2 steps, both players; fruit_market and factory_commons' HOLD: 2 steps,
  both players), eating a mushroom (externality_mushrooms:
  up to 15 steps; the freezing patches are learned in `fit`), a move under fruit_market's stamina
  (up to 6 steps; its stamina also depends on hunger and water, hidden here). The cause is taken from
  the real actions and states: a zap or interaction beam fired by a player whose reach (cells ahead
  and aside, from the config, walls ignored) covers the player. Whether the beam really hit (a wall, a
  cooldown, a not-ready inventory) is hidden, and a freeze is one unbroken stretch from its cause, so
  the real player's own moves and turns after the cause settle it: the player is FROZEN from the cause
  up to its last refused (not rule-blocked) move or turn before its first one that went through,
  within the freeze's length; FREE after that. A refusal with no cause in reach stays a failure.
- Shoves (`Shove`, fruit_market and factory_commons): SHOVE and PULL move a player held by the
  shover one cell; whether it is held is hidden, so a player within the beam's reach of a SHOVE or
  PULL is UNDECIDED at that step (a cause in the real actions, not the player's outcome).
Other mechanics are reported, not hidden: a zap can remove a player mid-step (removed players are
not scored); boat_race's seats, paintball's opponent ground and hidden_agenda's vote stop movement too
but were not seen to matter on the measured episodes.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch

from actionparty_env import grid
from actionparty_env.grid import CELL, MOVES, TURNS
from actionparty_env.model.codebook import frame_to_cells
from actionparty_env.stamina import STAMINA, Stamina, StaminaState, meals, stamina_step

DIRS = np.array(grid.DIRS)  # N, E, S, W as (drow, dcol); MOVES: offset from the facing; TURNS: its change
OTHER, MOVE, TURN = 0, 1, 2  # action kinds
FREE, FROZEN, UNDECIDED = 0, 1, 2  # a player's situation at a step, decided from the real episode
REFUSED, WENT, NEUTRAL = 0, 1, 2  # what a real move or turn did (NEUTRAL: no move or turn, or rule-blocked)


@dataclass(frozen=True)
class TimedFreeze:
    """A freeze of at most `steps` steps (the Lua's `disallowMovementUntil`) that `cause` starts:
    "beam": a player fired one of `actions` and the player is within `reach` (cells ahead, cells aside)
    of it (`firer_too`: the firer freezes as well); "entered": the player moved onto a patch learned to
    freeze (`RuleChecker.fit`); "moved": the player moved (a stamina freeze whose band is hidden)."""
    cause: str
    steps: int
    actions: tuple[str, ...] = ()
    reach: tuple[int, int] = (0, 0)
    firer_too: bool = False


@dataclass(frozen=True)
class Shove:
    """SHOVE/PULL (meltingpot/lua/modules/avatar_grappling.lua): a beam of `reach` cells ahead moves
    the player it hits, if the shover holds it (hidden)."""
    actions: tuple[str, ...] = ("SHOVE", "PULL")
    reach: tuple[int, int] = (2, 0)


_ZAP_FREEZE = TimedFreeze("beam", 25, ("FIRE_ZAP",), (3, 1))  # GraduatedSanctionsMarking: freeze 25
_HOLD = TimedFreeze("beam", 2, ("HOLD",), (2, 0), firer_too=True)  # Grappling: both frozen 2 steps
# Per substrate (name up to "__"), from meltingpot/configs/substrates/*.py.
MECHANICS: dict[str, tuple] = {
    "allelopathic_harvest": (_ZAP_FREEZE,),
    "externality_mushrooms": (_ZAP_FREEZE, TimedFreeze("entered", 15)),  # digestionTimes: 0, 10 or 15
    "territory": (TimedFreeze("beam", 25, ("FIRE_ZAP",), (2, 1)),),
    # GameInteractionZapper: both interactants frozen freezeOnInteraction + 2 = 18 steps.
    "in_the_matrix": (TimedFreeze("beam", 18, ("INTERACT",), (3, 1), firer_too=True),),
    "predator_prey": (STAMINA["predator_prey"],),  # with the predators' meals
    "factory_commons": (STAMINA["factory_commons"], _HOLD, Shove()),
    "fruit_market": (TimedFreeze("moved", 6), _HOLD, Shove()),  # stamina also spent by hunger, water
}


def mechanics_of(substrate: str) -> tuple:
    """The freezes and shoves of a substrate (`MECHANICS`), () where it has none."""
    family = substrate.split("__")[0]
    key = "in_the_matrix" if family.endswith("_in_the_matrix") else family
    return MECHANICS.get(key, ())


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
    """Checks transitions of one substrate against its movement rules and mechanics (see the module doc)."""
    action_names: tuple[str, ...]
    torus: bool = False
    passable: set[tuple[str, bytes]] = field(default_factory=set)  # (role, patch bytes) moves go into
    substrate: str = ""                                # selects `MECHANICS`
    roles: tuple[str, ...] = ()                        # per player slot (the stamina's freeze times)
    freezing: set[bytes] = field(default_factory=set)  # patches whose entering freezes ("entered")

    @classmethod
    def fit(cls, action_names, episodes, torus: bool = False) -> "RuleChecker":
        """Learn the passable patches (and the freezing ones, where the substrate has an "entered"
        freeze) from real episodes (objects with frames [T+1,H,W,3], actions [T,N], cells [T+1,N,2],
        facing [T+1,N], alive [T+1,N] and a `header` naming the substrate and roles; ground truth, not
        detections)."""
        header = (getattr(episodes[0], "header", None) if len(episodes) else None) or {}
        rules = cls(tuple(action_names), torus, _passable(action_names, episodes, torus),
                    header.get("substrate", ""), tuple(header.get("roles", ())))
        if mechanics_of(rules.substrate):
            # A frozen player's refused move says nothing about its target: learn again without those.
            entered = [m for m in mechanics_of(rules.substrate) if isinstance(m, TimedFreeze) and m.cause == "entered"]
            if entered:
                rules.freezing = rules._learn_freezing(episodes, entered[0].steps)
            frozen = [rules.situation(_arrays(ep)) != FREE for ep in episodes]
            rules.passable = _passable(action_names, episodes, torus, frozen)
        return rules

    def _learn_freezing(self, episodes, steps: int) -> set[bytes]:
        """Patches after whose entering the player's next move or turn (within `steps`) was refused in
        at least half of the real entries (a mushroom being digested; not a floor)."""
        entered, froze = Counter(), Counter()
        for ep in episodes:
            real = _arrays(ep)
            outcome, kind = self.outcomes(real), self._kinds(real["actions"])
            rows, cols = real["frames"].shape[1] // CELL, real["frames"].shape[2] // CELL
            for s, i in zip(*np.nonzero((outcome == WENT) & (kind == MOVE))):
                y, x = real["cells"][s + 1, i]
                key = frame_to_cells(real["frames"][s]).reshape(rows, cols, -1)[y, x].tobytes()
                entered[key] += 1
                later = outcome[s + 1:s + 1 + steps, i]
                decided = later[later != NEUTRAL]
                froze[key] += bool(len(decided)) and decided[0] == REFUSED
        return {k for k, n in entered.items() if 0 < froze[k] and 2 * froze[k] >= n}

    # ----------------------------------------------------------------------------------- checking
    def score_truth(self, real: dict) -> np.ndarray:
        """The checker on a real episode's ground-truth states (`real`: frames, actions, cells, facing,
        alive): [[followed, scored], [the same over FREE moves and turns], [decided, alive before and
        after]] (the last row is the checker's coverage)."""
        out = np.zeros((3, 2))
        situation = self.situation(real)
        cells, facing, inside, occupied = _true_states(real)
        for t in range(1, len(cells)):
            ok = self.check(real["actions"][t - 1], real["frames"][t - 1], cells[t - 1], facing[t - 1], inside[t - 1],
                            cells[t], facing[t], inside[t], occupied[t - 1], occupied[t], situation[t - 1])
            both = inside[t - 1] & inside[t]
            scored = both & (situation[t - 1] != UNDECIDED)
            _, _, kind = rule_outcome(self.action_names, real["actions"][t - 1], cells[t - 1], facing[t - 1])
            mt = scored & ((kind == MOVE) | (kind == TURN)) & (situation[t - 1] == FREE)  # as benchmarks/fidelity.py
            out += [[(ok & scored).sum(), scored.sum()], [(ok & mt).sum(), mt.sum()], [scored.sum(), both.sum()]]
        return out

    def check(self, actions, frame, cells, facing, found, next_cells, next_facing, next_found,
              occupied, next_occupied, situation: np.ndarray | None = None) -> np.ndarray:
        """Whether each player's transition follows its action: bool [N].

        actions [N]; frame [H,W,3] (before the step); (cells [N,2], facing [N], found [N]) before and
        (next_*) after; occupied, next_occupied bool [R,C]: cells where any player is drawn; situation
        [N] (`situation(real)[t]`, default FREE): a FROZEN player must keep its cell and facing; an
        UNDECIDED one is not to be scored (False here). A player not found before or after does not
        follow."""
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
        blocks = np.array([bool(inside[i]) and passable_key(self.roles, i, patches[ty[i], tx[i]]) not in self.passable
                           for i in range(len(kind))], bool)
        could_block = ~inside | occupied[ty, tx] | next_occupied[ty, tx] | blocks
        ok = np.where(kind == MOVE, moved | (same_cell & same_facing & could_block),
                      np.where(kind == TURN, same_cell & (next_facing == turned), same_cell & same_facing))
        if situation is not None:
            situation = np.asarray(situation)
            ok = np.where(situation == FROZEN, same_cell & same_facing, ok & (situation == FREE))
        return ok & np.asarray(found, bool) & np.asarray(next_found, bool)

    def outcomes(self, real: dict) -> np.ndarray:
        """What each real move or turn did under the movement rules alone: REFUSED (kept cell and
        facing where nothing could block it), WENT (took effect) or NEUTRAL: int8 [T, N]."""
        frames, actions = real["frames"], np.asarray(real["actions"], np.int64)
        cells, facing, inside, occupied = _true_states(real)
        out = np.full(actions.shape, NEUTRAL, np.int8)
        for t in range(len(actions)):
            kind = self._kinds(actions[t])
            follows = self.check(actions[t], frames[t], cells[t], facing[t], inside[t], cells[t + 1], facing[t + 1],
                                 inside[t + 1], occupied[t], occupied[t + 1])
            stayed = (cells[t + 1] == cells[t]).all(-1) & (facing[t + 1] == facing[t])
            acts = (kind != OTHER) & inside[t] & inside[t + 1]
            out[t, acts & stayed & ~follows] = REFUSED
            out[t, acts & ~stayed & follows] = WENT
        return out

    def situation(self, real: dict) -> np.ndarray:
        """Each player's situation at each step, FREE, FROZEN or UNDECIDED: int8 [T, N], from the real
        episode's arrays (frames [T+1,H,W,3], actions [T,N], cells [T+1,N,2], facing, alive [T+1,N])."""
        actions = np.asarray(real["actions"], np.int64)
        frozen, undecided = np.zeros(actions.shape, bool), np.zeros(actions.shape, bool)
        mechanics = mechanics_of(self.substrate)
        outcome = self.outcomes(real) if mechanics else None
        for m in mechanics:
            if isinstance(m, Stamina):
                frozen |= self._stamina_frozen(m, real)
            elif isinstance(m, TimedFreeze):
                frozen |= _revealed_freezes(self._causes(m, real), outcome, m.steps)
            elif isinstance(m, Shove):
                undecided |= self._beam_hits(m.actions, m.reach, real)
        return np.where(undecided, UNDECIDED, np.where(frozen, FROZEN, FREE)).astype(np.int8)

    # ------------------------------------------------------------------------------- mechanics
    def _kinds(self, actions: np.ndarray) -> np.ndarray:
        return rule_outcome(self.action_names, actions, np.zeros(actions.shape + (2,), np.int64),
                            np.zeros(actions.shape, np.int64))[2]

    def _stamina_frozen(self, rule: Stamina, real: dict) -> np.ndarray:
        """Steps at which the replayed stamina (and the meals) freezes each player: bool [T, N]."""
        actions = torch.as_tensor(np.asarray(real["actions"], np.int64))
        alive = torch.as_tensor(real["alive"].astype(bool))
        cells = torch.as_tensor(np.asarray(real["cells"], np.int64))
        facing = torch.as_tensor(np.asarray(real["facing"], np.int64))
        rows, cols = real["frames"].shape[1] // CELL, real["frames"].shape[2] // CELL
        costly = rule.costly_actions(list(self.action_names))[actions]
        interact = torch.as_tensor(np.asarray(self.action_names) == "INTERACT")[actions]
        roles = tuple(self.roles[i] if i < len(self.roles) else "" for i in range(actions.shape[1]))
        times, predators = rule.freeze_steps(roles), rule.predators(roles)
        state = StaminaState.fresh(rule, (actions.shape[1],))
        frozen = torch.zeros(actions.shape, dtype=torch.bool)
        for t in range(len(actions)):
            # After the step's moves: the eaten player's recorded cell is where it was eaten.
            ate = meals(state, predators, interact[t], cells[t + 1], facing[t + 1], alive[t], alive[t + 1], rows, cols,
                        self.torus) if rule.meal_freeze else None
            state, frozen[t] = stamina_step(rule, times, state, costly[t], alive[t], ate)
        return frozen.numpy()

    def _beam_hits(self, fired: tuple[str, ...], reach: tuple[int, int], real: dict) -> np.ndarray:
        """Players within `reach` of another live player firing one of `fired` (0 to reach[0] cells ahead
        and up to reach[1] aside: a beam of radius r starts beside the firer), at their cell before or
        after the step: bool [T, N]."""
        actions, alive = np.asarray(real["actions"], np.int64), real["alive"].astype(bool)
        cells, facing = real["cells"].astype(np.int64), real["facing"].astype(np.int64)
        shape = np.array(real["frames"].shape[1:3]) // CELL
        firing = np.isin(np.asarray(self.action_names)[actions], fired) & alive[:-1]
        out = np.zeros(actions.shape, bool)
        for t, j in zip(*np.nonzero(firing)):
            ahead_dir, aside_dir = DIRS[facing[t, j] % 4], DIRS[(facing[t, j] + 1) % 4]
            hit = np.zeros(actions.shape[1], bool)
            for s in (t, t + 1):
                rel = cells[s] - cells[t, j]
                if self.torus:  # the nearest copy across the wrapped edges
                    rel = (rel + shape // 2) % shape - shape // 2
                ahead, aside = rel @ ahead_dir, rel @ aside_dir
                hit |= (ahead >= 0) & (ahead <= reach[0]) & (np.abs(aside) <= reach[1]) & alive[s]
            hit[j] = False  # not the firer itself
            out[t] |= hit
        return out

    def _causes(self, freeze: TimedFreeze, real: dict) -> np.ndarray:
        """Steps at which something that can start `freeze` happened to each player: bool [T, N]."""
        actions, alive = np.asarray(real["actions"], np.int64), real["alive"].astype(bool)
        names = np.asarray(self.action_names)[actions]
        if freeze.cause == "beam":
            hit = self._beam_hits(freeze.actions, freeze.reach, real)
            if freeze.firer_too:
                hit |= np.isin(names, freeze.actions) & hit.any(1, keepdims=True)
            return hit
        if freeze.cause == "moved":
            return self._kinds(actions) == MOVE
        if freeze.cause == "entered":
            frames, cells = real["frames"], real["cells"].astype(np.int64)
            rows, cols = frames.shape[1] // CELL, frames.shape[2] // CELL
            out = np.zeros(actions.shape, bool)
            moved = (cells[1:] != cells[:-1]).any(-1) & alive[:-1] & alive[1:]
            for t, i in zip(*np.nonzero(moved)):
                y, x = cells[t + 1, i]
                if 0 <= y < rows and 0 <= x < cols:
                    out[t, i] = frames[t, y * CELL:(y + 1) * CELL, x * CELL:(x + 1) * CELL].tobytes() in self.freezing
            return out
        raise ValueError(f"unknown freeze cause {freeze.cause!r}")


def passable_key(roles: tuple[str, ...], player: int, patch: np.ndarray) -> tuple[str, bytes]:
    """(the player's role, the patch's bytes): a key of `RuleChecker.passable`. Per role, as
    predator_prey's tall grass lets prey in, not predators ("" where the episode names no roles)."""
    return (roles[player] if player < len(roles) else "", patch.tobytes())


def _passable(action_names, episodes, torus: bool, skip: list[np.ndarray] | None = None) -> set[tuple[str, bytes]]:
    """(Role, patch) keys that real moves into a free cell went into at least as often as they were
    blocked there (`skip`: per episode, bool [T, N] transitions not counted)."""
    blocked, passed = Counter(), Counter()
    for e, ep in enumerate(episodes):
        roles = tuple(((getattr(ep, "header", None) or {}).get("roles", ())))
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
            counted = (kind == MOVE) & alive[t] & alive[t + 1] & (True if skip is None else ~skip[e][t])
            for i in np.flatnonzero(counted):
                y, x = target[i]
                if not (0 <= y < rows and 0 <= x < cols) or others[i, y, x] > 0:
                    continue
                if patches is None:
                    patches = frame_to_cells(frames[t]).reshape(rows, cols, -1)
                key = passable_key(roles, i, patches[y, x])
                if (cells[t + 1, i] == target[i]).all():
                    passed[key] += 1
                elif (cells[t + 1, i] == cells[t, i]).all():
                    blocked[key] += 1
    return {k for k, n in passed.items() if n >= blocked[k]}


def _revealed_freezes(causes: np.ndarray, outcome: np.ndarray, steps: int) -> np.ndarray:
    """FROZEN steps from possible causes [T, N] and the real outcomes [T, N]: a freeze is one unbroken
    stretch of at most `steps` steps from its cause, so the player is frozen at the cause's step if its
    move or turn was refused there, and from the next step up to its last refused move or turn before
    the first that went through, within `steps` (update order decides whether the cause's own step is
    frozen)."""
    frozen = np.zeros(causes.shape, bool)
    for s, i in zip(*np.nonzero(causes)):
        frozen[s, i] |= outcome[s, i] == REFUSED
        window = outcome[s + 1:s + 1 + steps, i]
        went = np.flatnonzero(window == WENT)
        refused = np.flatnonzero(window[:went[0] if len(went) else len(window)] == REFUSED)
        if len(refused):
            frozen[s + 1:s + 2 + refused[-1], i] = True
    return frozen


def _true_states(real: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A real episode's cells and facing (int64), `inside` (alive and on the map, [T+1, N]) and the
    cells any such player stands on (bool [T+1, R, C])."""
    rows, cols = real["frames"].shape[1] // CELL, real["frames"].shape[2] // CELL
    cells, facing = np.asarray(real["cells"], np.int64), np.asarray(real["facing"], np.int64)
    inside = np.asarray(real["alive"], bool) & (cells >= 0).all(-1) & (cells < (rows, cols)).all(-1)
    occupied = np.zeros((len(cells), rows, cols), bool)
    for t in range(len(cells)):
        occupied[t, cells[t, inside[t], 0], cells[t, inside[t], 1]] = True
    return cells, facing, inside, occupied


def _arrays(ep) -> dict:
    return {"frames": np.asarray(ep.frames), "actions": np.asarray(ep.actions, np.int64), "cells": np.asarray(ep.cells),
            "facing": np.asarray(ep.facing), "alive": np.asarray(ep.alive, bool)}
