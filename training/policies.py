"""Behaviour policies for recording real Melting Pot episodes.

A world model ignores actions it rarely saw, so the recorder's players must cover the whole action
space, and in runs long enough to show what an action does (a player walking down a corridor, not
jittering in place). Two policies:

- `persistent_random`: each player draws an action uniformly and keeps it for a uniformly drawn
  1..4 steps (people and trained agents repeat actions too).
- `mix`: per player and episode a behaviour is drawn once: persistent random (probability
  `p_random`), or a biased explorer that walks forward more, turns, steps sideways, uses the
  substrate's own actions (fire, interact, ...) and idles at set rates.

Action kinds come from the substrate's action set (the dmlab2d dict of each action), not from
names: `idle` (all zero), `forward` (move 1), `step` (other moves), `turn`, `use` (anything else).
Every policy is seeded by the episode's seed and stores its name and parameters in the episode
header (`describe()`).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

POLICIES = ("persistent_random", "mix")
KINDS = ("idle", "forward", "step", "turn", "use")


def action_kinds(action_set: Sequence[Mapping[str, int]]) -> list[str]:
    """The kind of each action of a Melting Pot action set (see the module docstring)."""
    kinds = []
    for action in action_set:
        move, turn = action.get("move", 0), action.get("turn", 0)
        other = any(v != 0 for k, v in action.items() if k not in ("move", "turn"))
        if other:
            kinds.append("use")
        elif turn != 0:
            kinds.append("turn")
        elif move == 1:
            kinds.append("forward")
        elif move != 0:
            kinds.append("step")
        else:
            kinds.append("idle")
    return kinds


@dataclass(frozen=True)
class PersistentRandomParams:
    min_hold: int = 1
    max_hold: int = 4


@dataclass(frozen=True)
class ExplorerParams:
    # Probability of each action kind when a new action is drawn (kinds a substrate lacks are
    # dropped and the rest renormalised); the action is then uniform within its kind.
    rates: dict[str, float] = field(default_factory=lambda: {
        "forward": 0.40, "turn": 0.20, "step": 0.10, "use": 0.15, "idle": 0.15})
    # Steps an action is held, uniform in [min, max] per kind: long walks, single turns.
    holds: dict[str, tuple[int, int]] = field(default_factory=lambda: {
        "forward": (1, 6), "turn": (1, 1), "step": (1, 3), "use": (1, 3), "idle": (1, 4)})


@dataclass(frozen=True)
class MixParams:
    p_random: float = 0.5
    random: PersistentRandomParams = field(default_factory=PersistentRandomParams)
    explorer: ExplorerParams = field(default_factory=ExplorerParams)


@dataclass(frozen=True)
class Behaviour:
    """What one player does: a distribution over actions and a hold range per action."""
    name: str
    probs: np.ndarray      # float64 [A], sums to 1
    hold_min: np.ndarray   # int64 [A]
    hold_max: np.ndarray   # int64 [A]


def persistent_random(num_actions: int, params: PersistentRandomParams) -> Behaviour:
    ones = np.ones(num_actions, dtype=np.int64)
    return Behaviour("persistent_random", np.full(num_actions, 1.0 / num_actions),
                     ones * params.min_hold, ones * params.max_hold)


def explorer(action_set: Sequence[Mapping[str, int]], params: ExplorerParams) -> Behaviour:
    kinds = np.array(action_kinds(action_set))
    probs = np.zeros(len(kinds))
    for kind, rate in params.rates.items():
        members = kinds == kind
        if members.any():
            probs[members] = rate / members.sum()
    hold_min = np.array([params.holds[k][0] for k in kinds], dtype=np.int64)
    hold_max = np.array([params.holds[k][1] for k in kinds], dtype=np.int64)
    return Behaviour("explorer", probs / probs.sum(), hold_min, hold_max)


class Policy:
    """Players acting independently, each by its own `Behaviour`, holding each action a while."""

    def __init__(self, name: str, params: PersistentRandomParams | MixParams, behaviours: list[Behaviour],
                 rng: np.random.Generator):
        self.name, self.params, self.behaviours, self.rng = name, params, behaviours, rng
        self._cum = np.stack([np.cumsum(b.probs) for b in behaviours])        # [N, A]
        self._hold_min = np.stack([b.hold_min for b in behaviours])
        self._hold_max = np.stack([b.hold_max for b in behaviours])
        self._action = np.zeros(len(behaviours), dtype=np.int64)
        self._left = np.zeros(len(behaviours), dtype=np.int64)               # steps still held

    def act(self) -> np.ndarray:
        """int64 [N]: this step's action index of every player."""
        redraw = np.flatnonzero(self._left == 0)
        if redraw.size:
            u = self.rng.random(redraw.size)
            cum = self._cum[redraw]
            action = np.minimum((u[:, None] >= cum).sum(1), cum.shape[1] - 1)
            lo, hi = self._hold_min[redraw, action], self._hold_max[redraw, action]
            self._action[redraw] = action
            self._left[redraw] = self.rng.integers(lo, hi + 1)
        self._left -= 1
        return self._action.copy()

    def describe(self) -> dict:
        """JSON-able record for the episode header."""
        return {"name": self.name, "params": asdict(self.params),
                "behaviours": [b.name for b in self.behaviours]}


def make_policy(name: str, action_set: Sequence[Mapping[str, int]], num_players: int,
                seed: int) -> Policy:
    """A policy for `num_players` players of a substrate with this action set, seeded by `seed`."""
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; choose one of {POLICIES}")
    if num_players < 1 or not action_set:
        raise ValueError(f"need >= 1 player and a non-empty action set, got {num_players} players, "
                         f"{len(action_set)} actions")
    rng = np.random.default_rng([seed, 0x9E3779B9])  # a stream apart from the engine's seed
    if name == "persistent_random":
        params = PersistentRandomParams()
        behaviours = [persistent_random(len(action_set), params)] * num_players
        return Policy(name, params, behaviours, rng)
    params = MixParams()
    choices = rng.random(num_players) < params.p_random
    behaviours = [persistent_random(len(action_set), params.random) if c
                  else explorer(action_set, params.explorer) for c in choices]
    return Policy(name, params, behaviours, rng)
