"""Behaviour policies for recording real Melting Pot episodes.

A world model ignores actions it rarely saw, so the recorder's players must cover the whole action
space, and in runs long enough to show what an action does (a player walking down a corridor, not
jittering in place). Two open-loop policies:

- `persistent_random`: each player draws an action uniformly and keeps it for a uniformly drawn
  1..4 steps (people and trained agents repeat actions too).
- `mix`: per player and episode a behaviour is drawn once: persistent random (probability
  `p_random`), or a biased explorer that walks forward more, turns, steps sideways, uses the
  substrate's own actions (fire, interact, ...) and idles at set rates.

Both are open-loop: they never look at the game. Random players rarely meet, zap, harvest or die,
and a world model learns little about blocking, chasing, zapping or dying from them (issues 12 and
13). The closed-loop policy sees each step's real state (`State`: every player's cell, facing and
alive flag as a `grid.PlayerStates`, the map size, the frame and the last rewards, handed over by
the recorder) and acts on it:

- `rl_mix`: per player and episode one behaviour is drawn (`RLMixParams.weights`): persistent random
  (35%, so the whole action space stays covered), the explorer (20%), and the closed-loop ones:
  - `seeker` (25%): walks toward the nearest other live player within `radius` cells, turns to face
    it and fires the substrate's player-directed `use` actions (zap, interact, tag) when it is within
    reach ahead (Melting Pot's beams: 3 cells long, 1 to each side); next to it, it pushes into it or
    waits, and after a few steps in contact it rests (random actions) before seeking again: a chase,
    not a clinch. With nobody within `radius` it collects;
  - `blocker` (5%): walks to the cell in front of another player's face and turns to face it;
  - `follower` (5%): walks to the cell behind another player, faces its way and queues behind it;
  - `collector` (10%): walks forward through the map in long runs, turns where a wall stops it, uses
    the substrate's other `use` actions often (harvest, clean, claim), and walks to the nearest cell
    showing a patch that paid a player who stepped onto it this episode (apples, coins);
  - `cleaner` (weight 1.0, only where the substrate has a cleaning action, so about half of clean_up's
    players; fewer clean slower than the river fouls, 0.5 cells a step): in shifts, walks to the
    nearest cell showing the river's dirt (the dirt's colour over another patch of the frame,
    `actionparty_env.clean_up.overlay_pairs`) and fires FIRE_CLEAN when the dirt is within the beam's
    reach ahead, then collects a while (someone must eat what the clean river grows); with no dirt in
    sight it collects. Without cleaners no recorded clean_up episode grew
    an apple (the river starts above the pollution at which apples stop growing).
  Every closed-loop player also takes a uniformly random action now and then (`p_noise`), stands
  still a few steps when the game refused its move or turn (stamina, a freeze), and steers round the
  walls the players have bumped into (`ClosedLoopPolicy`).

A trained policy mixes in the same way: `sb3:PATH.zip` (`SB3MixParams`) gives each player, per
episode, the stable-baselines3 policy at PATH (probability `share`; it acts on the player's own real
RGB view, as in the envs, sampling its actions, with an `epsilon` share of uniform random ones) or an
`rl_mix` behaviour. Recording a policy trained in the dream this way is how the dream learns what the
policy exploits (benchmarks/rl.py); one trained in the real game adds competent play.

Action kinds come from the substrate's action set (the dmlab2d dict of each action), not from
names: `idle` (all zero), `forward` (move 1), `step` (other moves), `turn`, `use` (anything else).
A move's direction comes from its `move` value (1..4 = forward, right, backward, left of the facing,
Melting Pot's `moveRel`), a turn's from its sign. The closed-loop behaviours split `use` actions by
their dict keys into player-directed ones (`ZAP_KEYS`) and the rest, and prefer the former to hit
players, the latter to collect. Every policy is seeded by the episode's seed and stores its name and
parameters in the episode header (`describe()`). `act(step, state)` is the one interface; the
open-loop policies ignore both arguments (`act()` works for them), so they give the same actions for
the same seed as before the closed-loop policies existed.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from actionparty_env.clean_up import DIRT_COLOUR, overlay_pairs
from actionparty_env.grid import HasPlayers, PlayerStates

POLICIES = ("persistent_random", "mix", "rl_mix")
SB3_PREFIX = "sb3:"  # "sb3:PATH.zip": a trained SB3 policy mixed with rl_mix (SB3MixParams)
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

    def act(self, step: int | None = None, state: State | None = None) -> np.ndarray:
        """int64 [N]: this step's action index of every player (open-loop: `step` and `state`
        are ignored)."""
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


# ----------------------------------------------------------------------------- closed loop

DIRS = np.array([(-1, 0), (0, 1), (1, 0), (0, -1)], dtype=np.int64)  # N, E, S, W as (drow, dcol)
# `use` actions aimed at other players: zaps, the *_in_the_matrix and predator_prey interaction
# beams, hidden_agenda's tag. Other `use` actions (clean, claim, harvest, eat, ...) are "collect".
ZAP_KEYS = ("fireZap", "interact", "tag")
CLEAN_KEYS = ("fireClean",)
WALL_MEMORY = 300  # steps a cell that refused a move stays known as a wall (walls can be destroyed)
TIRED_MEMORY = 20  # steps after a refused turn in which a player's refused moves mark no walls
_PATCH_MULT = (np.random.default_rng(0x9A7C4).integers(1, 2**63, size=24, dtype=np.uint64) | np.uint64(1))


def patch_hashes(frame: np.ndarray) -> np.ndarray:
    """uint64 [rows, cols]: a hash of each 8x8 cell patch of a global frame (equal patches, equal
    hashes)."""
    h, w = frame.shape[:2]
    rows, cols = h // 8, w // 8
    patches = np.ascontiguousarray(frame[:rows * 8, :cols * 8].reshape(rows, 8, cols, 8, 3)
                                   .transpose(0, 2, 1, 3, 4)).reshape(rows, cols, 192)
    return (patches.view(np.uint64) * _PATCH_MULT).sum(-1, dtype=np.uint64)


@dataclass(frozen=True)
class State(HasPlayers):
    """What a closed-loop policy sees each step: the real state before the step's actions. `cells`,
    `facing` and `alive` are read-only properties that forward to `players` (grid.HasPlayers)."""
    players: PlayerStates        # numpy: cells int [N, 2] (row, col), meaningless where not alive;
    #                              facing int [N] 0..3 = N, E, S, W; alive bool [N]
    rows: int
    cols: int
    torus: bool = False          # the map wraps (allelopathic_harvest__open, territory__rooms)
    frame: np.ndarray | None = None    # uint8 [rows*8, cols*8, 3]: the global frame
    rewards: np.ndarray | None = None  # float [N]: the rewards of the transition into this state
    views: np.ndarray | None = None    # uint8 [N, V, V, 3]: each player's own RGB view (the envs' observations)


class ActionTable:
    """A substrate's actions by what they do: moves by direction relative to the facing (from the
    `move` value: 1..4 = forward, right, backward, left), turns by sign, `use` actions split into
    player-directed ones (`zap`, keys in ZAP_KEYS) and the rest (`collect`), of which `clean` cleans
    (keys in CLEAN_KEYS)."""

    def __init__(self, action_set: Sequence[Mapping[str, int]]):
        self.kinds = action_kinds(action_set)
        self.num_actions = len(action_set)
        self.move: dict[int, int] = {}          # offset from the facing (0 fwd, 1 right, 2 back, 3 left)
        self.offset = np.full(self.num_actions, -1, dtype=np.int64)   # per action: its move offset
        self.turn: dict[int, int] = {}          # -1 left, +1 right
        self.idle = self.kinds.index("idle") if "idle" in self.kinds else 0
        self.zap, self.collect, self.clean = [], [], []
        for a, (kind, action) in enumerate(zip(self.kinds, action_set)):
            if kind in ("forward", "step") and 1 <= action["move"] <= 4:
                self.move.setdefault(action["move"] - 1, a)
                self.offset[a] = action["move"] - 1
            elif kind == "turn":
                self.turn.setdefault(1 if action["turn"] > 0 else -1, a)
            elif kind == "use":
                keyed = any(action.get(k, 0) != 0 for k in ZAP_KEYS)
                (self.zap if keyed else self.collect).append(a)
                if any(action.get(k, 0) != 0 for k in CLEAN_KEYS):
                    self.clean.append(a)
        self.use = self.zap + self.collect


@dataclass(frozen=True)
class SeekerParams:
    reach: int = 3           # fire when the target is 1..reach cells ahead ...
    width: int = 1           # ... and at most this many cells to the side (Melting Pot's beams)
    p_fire: float = 0.7      # a target in reach: fire (else keep approaching)
    p_zap: float = 0.85      # firing picks a player-directed use action (else any use action)
    p_turn: float = 0.5      # a target to the side or behind: turn toward it (else step toward it)
    p_push: float = 0.5      # a target adjacent ahead and no firing: walk into it (a blocked move)
    p_noise: float = 0.1     # a uniformly random action instead, held 1..2 steps
    p_unstick: float = 0.8   # a move a wall stopped: escape by a random turn or side step, held 1..3
    contact: tuple[int, int] = (3, 12)   # steps next to a target (distance <= 1) before resting
    rest: tuple[int, int] = (4, 16)      # steps of persistent random (1..4 holds) while resting
    radius: int = 10         # no live player within this distance: collect (as a collector) instead


@dataclass(frozen=True)
class FollowerParams:
    spot: str = "front"      # "front": the cell before the target's face (block); "behind": queue
    retarget: tuple[int, int] = (10, 40)   # steps a target is kept (uniform), unless it dies
    p_turn: float = 0.5
    p_use: float = 0.3       # at the spot, facing right: a use action (else push forward or wait)
    p_noise: float = 0.1
    p_unstick: float = 0.8


@dataclass(frozen=True)
class CollectorParams:
    rates: dict[str, float] = field(default_factory=lambda: {
        "forward": 0.45, "use": 0.22, "turn": 0.13, "step": 0.08, "idle": 0.12})
    holds: dict[str, tuple[int, int]] = field(default_factory=lambda: {
        "forward": (2, 6), "use": (1, 3), "turn": (1, 1), "step": (1, 2), "idle": (1, 3)})
    p_collect: float = 0.8   # a use action picks a non-player-directed one where the game has any
    p_unstick: float = 0.9   # a move a wall stopped: turn
    p_harvest: float = 0.7   # a known resource in sight: walk to the nearest one (else as above)
    p_turn: float = 0.3      # while walking to a resource: turn toward it rather than step sideways


@dataclass(frozen=True)
class CleanerParams:
    reach: int = 3           # fire when the dirt is 1..reach cells ahead ...
    width: int = 1           # ... and at most this far to the side (the Cleaner's beam: 3 long, 1 wide)
    p_fire: float = 0.9
    p_noise: float = 0.05    # a uniformly random action now and then
    p_turn: float = 0.5      # while walking to the dirt: turn toward it rather than step sideways
    p_unstick: float = 0.9   # a move a wall stopped: turn
    # it takes shifts: this many steps at the river, then this many collecting (someone must eat)
    clean_steps: tuple[int, int] = (40, 120)
    collect_steps: tuple[int, int] = (30, 90)


@dataclass(frozen=True)
class RLMixParams:
    # "cleaner" counts only where the substrate has a cleaning action (elsewhere the draw is as before)
    weights: dict[str, float] = field(default_factory=lambda: {
        "persistent_random": 0.35, "explorer": 0.20, "seeker": 0.25, "blocker": 0.05,
        "follower": 0.05, "collector": 0.10, "cleaner": 1.0})
    random: PersistentRandomParams = field(default_factory=PersistentRandomParams)
    explorer: ExplorerParams = field(default_factory=ExplorerParams)
    seeker: SeekerParams = field(default_factory=SeekerParams)
    blocker: FollowerParams = field(default_factory=FollowerParams)
    follower: FollowerParams = field(default_factory=lambda: FollowerParams(spot="behind"))
    collector: CollectorParams = field(default_factory=CollectorParams)
    cleaner: CleanerParams = field(default_factory=CleanerParams)


@dataclass
class _Seen:
    """One step's view, shared by the players: the state, pairwise offsets, known walls, bumps."""
    state: State
    deltas: np.ndarray       # int [N, N, 2]: shortest (drow, dcol) from i to j (wrapping on a torus)
    walls: np.ndarray        # bool [rows, cols]: cells known to refuse moves (recent bumps)
    bumped: list[str]        # per player: "", "player", "refused" or "wall" (its last move failed: why)
    tired: list[bool]        # per player: its last move or turn was refused (stamina, a freeze)
    resources: np.ndarray | None = None  # int [K, 2]: cells showing a patch that paid when entered
    dirt: np.ndarray | None = None       # int [K, 2]: cells showing the river's dirt (clean_up)

    def wrap(self, d: np.ndarray) -> np.ndarray:
        if self.state.torus:
            size = np.array([self.state.rows, self.state.cols])
            d = (d + size // 2) % size - size // 2
        return d

    def next_cell(self, cell: np.ndarray, direction: int) -> tuple[int, int] | None:
        """The cell one step in world direction 0..3, None off the map (wrapping on a torus)."""
        r, c = int(cell[0] + DIRS[direction][0]), int(cell[1] + DIRS[direction][1])
        s = self.state
        if s.torus:
            return r % s.rows, c % s.cols
        return (r, c) if 0 <= r < s.rows and 0 <= c < s.cols else None

    def is_wall(self, cell: np.ndarray, direction: int) -> bool:
        nxt = self.next_cell(cell, direction)
        return nxt is None or bool(self.walls[nxt])


class _Player:
    """One closed-loop player: its behaviour, its own random stream and its memory."""

    def __init__(self, behaviour: str, params, table: ActionTable, rng: np.random.Generator,
                 held: Behaviour | None = None, collector: CollectorParams | None = None):
        self.behaviour, self.params, self.table, self.rng = behaviour, params, table, rng
        self.collector = collector or CollectorParams()  # how a seeker collects with nobody near
        self.held = held                      # the open-loop behaviour of random/explorer players
        self.action, self.left = 0, 0         # an action held for `left` more steps
        self.target, self.target_left = -1, 0
        self.contact, self.contact_max, self.rest_left = 0, 0, 0
        self.shift, self.shift_left = "collect", 0  # a cleaner's shift (the first is "clean") and its steps left

    # -- helpers
    def _hold(self, action: int, lo: int, hi: int) -> int:
        self.action, self.left = int(action), int(self.rng.integers(lo, hi + 1)) - 1
        return self.action

    def draw_held(self) -> int:
        """The open-loop behaviours (persistent random, explorer): as `Policy.act` does."""
        if self.left > 0:
            self.left -= 1
            return self.action
        b = self.held
        a = int(self.rng.choice(len(b.probs), p=b.probs))
        return self._hold(a, int(b.hold_min[a]), int(b.hold_max[a]))

    def _random(self, lo: int = 1, hi: int = 2) -> int:
        return self._hold(int(self.rng.integers(self.table.num_actions)), lo, hi)

    def _pick_use(self, preferred: list[int], p: float) -> int:
        t = self.table
        pool = preferred if preferred and self.rng.random() < p else t.use
        return int(pool[self.rng.integers(len(pool))])

    def _go(self, direction: int, facing: int, p_turn: float) -> int:
        """The action that moves one cell in world `direction`, or (p_turn, unless it is ahead)
        turns toward it."""
        t = self.table
        offset = (direction - facing) % 4
        if offset != 0 and t.turn and self.rng.random() < p_turn:
            sign = {1: 1, 3: -1}.get(offset, 1 if self.rng.random() < 0.5 else -1)
            return t.turn.get(sign, next(iter(t.turn.values())))
        return t.move.get(offset, t.idle)

    def _toward(self, d: np.ndarray, cell: np.ndarray, facing: int, p_turn: float, seen: _Seen) -> int:
        """An action that brings a player at `cell` facing `facing` closer to the offset `d`: a
        world direction that shortens it, drawn in proportion to the distance along its axis and
        avoiding known walls; both blocked: a side step along the wall."""
        dirs, weights = [], []
        if d[0]:
            dirs.append(2 if d[0] > 0 else 0)
            weights.append(abs(int(d[0])))
        if d[1]:
            dirs.append(1 if d[1] > 0 else 3)
            weights.append(abs(int(d[1])))
        if not dirs:
            return self.table.idle
        free = [k for k in range(len(dirs)) if not seen.is_wall(cell, dirs[k])]
        if free:
            w = np.array([weights[k] for k in free], dtype=float)
            direction = dirs[free[int(self.rng.choice(len(free), p=w / w.sum()))]]
        else:  # every shortening direction is a known wall: go round it
            side = [k for k in range(4) if k not in dirs and (k + 2) % 4 not in dirs[:1]
                    and not seen.is_wall(cell, k)]
            side = side or [k for k in range(4) if not seen.is_wall(cell, k)] or list(range(4))
            direction = side[int(self.rng.integers(len(side)))]
            return self._hold(self._go(direction, facing, 0.0), 1, 3)  # a few steps along it
        return self._go(direction, facing, p_turn)

    def _face(self, facing: int, want: int) -> int | None:
        """A turn toward facing `want`, or None when already facing it."""
        diff = (want - facing) % 4
        if diff == 0:
            return None
        sign = 1 if diff == 1 else -1 if diff == 3 else (1 if self.rng.random() < 0.5 else -1)
        return self.table.turn.get(sign, self.table.idle)

    def _nearest(self, i: int, seen: _Seen) -> int:
        live = seen.state.alive.copy()
        live[i] = False
        if not live.any():
            return -1
        dist = np.abs(seen.deltas[i]).sum(-1).astype(float)
        dist[~live] = np.inf
        best = np.flatnonzero(dist == dist.min())
        return int(best[self.rng.integers(len(best))]) if len(best) > 1 else int(best[0])

    def _escape(self) -> int:
        t = self.table
        options = list(t.turn.values()) + [t.move[o] for o in (1, 3) if o in t.move]
        if not options:
            return self._random(1, 3)
        return self._hold(options[self.rng.integers(len(options))], 1, 3)

    # -- one step
    def act(self, i: int, seen: _Seen) -> int:
        """This step's action of closed-loop player i (a held move stops where a wall stopped it)."""
        if self.left > 0 and self.table.offset[self.action] >= 0 and seen.bumped[i] == "wall":
            self.left = 0
        if not seen.state.alive[i]:
            return self._random(1, 1)
        if seen.tired[i]:  # refused: stand still a few steps (standing recharges stamina)
            return self._hold(self.table.idle, 2, 6)
        if self.left > 0:
            self.left -= 1
            return self.action
        if self.behaviour == "seeker":
            return self._seeker(i, seen)
        if self.behaviour in ("blocker", "follower"):
            return self._follower(i, seen)
        if self.behaviour == "cleaner":
            return self._cleaner(i, seen)
        return self._collector(i, seen, self.params)

    def _seeker(self, i: int, seen: _Seen) -> int:
        p, t, rng, state = self.params, self.table, self.rng, seen.state
        if self.rest_left > 0:  # resting after a contact: persistent random, then seek again
            self.rest_left -= 1
            return self._random(1, min(4, self.rest_left + 1))
        if rng.random() < p.p_noise:
            return self._random(1, 2)
        if seen.bumped[i] == "wall" and rng.random() < p.p_unstick:
            return self._escape()
        j = self._nearest(i, seen)
        if j < 0:
            return self._random(1, 3)
        cell, facing, d = state.cells[i], int(state.facing[i]), seen.deltas[i, j]
        if np.abs(d).sum() > p.radius:
            return self._collector(i, seen, self.collector)
        if np.abs(d).sum() <= 1:  # in contact: after a while, rest (a chase, not a clinch)
            if self.contact == 0:
                self.contact_max = int(rng.integers(p.contact[0], p.contact[1] + 1))
            self.contact += 1
            if self.contact >= self.contact_max:
                self.contact, self.rest_left = 0, int(rng.integers(p.rest[0], p.rest[1] + 1))
        else:
            self.contact = 0
        ahead, side = int(d @ DIRS[facing]), int(d @ DIRS[(facing + 1) % 4])
        if t.use and 1 <= ahead <= p.reach and abs(side) <= p.width and rng.random() < p.p_fire:
            return self._pick_use(t.zap, p.p_zap)
        if ahead == 1 and side == 0:  # adjacent, facing it: push into it or wait
            return t.move.get(0, t.idle) if rng.random() < p.p_push else t.idle
        return self._toward(d, cell, facing, p.p_turn, seen)

    def _follower(self, i: int, seen: _Seen) -> int:
        p, t, rng, state = self.params, self.table, self.rng, seen.state
        if rng.random() < p.p_noise:
            return self._random(1, 2)
        if seen.bumped[i] == "wall" and rng.random() < p.p_unstick:
            return self._escape()
        self.target_left -= 1
        if self.target < 0 or not state.alive[self.target] or self.target_left <= 0:
            self.target = self._nearest(i, seen)
            self.target_left = int(rng.integers(p.retarget[0], p.retarget[1] + 1))
        j = self.target
        if j < 0:
            return self._random(1, 3)
        tf, front = int(state.facing[j]), p.spot == "front"
        spot = DIRS[tf] if front else -DIRS[tf]              # the spot relative to the target
        d = seen.wrap(seen.deltas[i, j] + spot)              # from me to the spot
        cell, facing = state.cells[i], int(state.facing[i])
        if not d.any():  # at the spot: face the target (front) or the target's way (behind)
            turn = self._face(facing, (tf + 2) % 4 if front else tf)
            if turn is not None:
                return turn
            if t.use and rng.random() < p.p_use:
                return self._pick_use(t.zap if front else t.collect, 0.8)
            return t.move.get(0, t.idle) if rng.random() < 0.5 else t.idle  # push or wait
        return self._toward(d, cell, facing, p.p_turn, seen)

    def _cleaner(self, i: int, seen: _Seen) -> int:
        p, t, rng, state = self.params, self.table, self.rng, seen.state
        self.shift_left -= 1
        if self.shift_left <= 0:
            self.shift = "collect" if self.shift == "clean" else "clean"
            self.shift_left = int(rng.integers(*(p.clean_steps if self.shift == "clean" else p.collect_steps))) + 1
        if self.shift == "collect" or seen.dirt is None or not len(seen.dirt):
            return self._collector(i, seen, self.collector)
        if rng.random() < p.p_noise:
            return self._random(1, 1)
        if seen.bumped[i] == "wall" and rng.random() < p.p_unstick:
            return self._escape()
        cell, facing = state.cells[i], int(state.facing[i])
        d = seen.wrap(seen.dirt - cell)
        dist = np.abs(d).sum(-1)
        ahead, side = d @ DIRS[facing], d @ DIRS[(facing + 1) % 4]
        if ((ahead >= 1) & (ahead <= p.reach) & (np.abs(side) <= p.width)).any() and rng.random() < p.p_fire:
            return int(t.clean[int(rng.integers(len(t.clean)))])
        best = np.flatnonzero(dist == dist.min())
        target = d[best[int(rng.integers(len(best)))]]
        if not target.any():  # standing on the dirt: the beam starts ahead, so step off it
            return self._escape()
        return self._toward(target, cell, facing, p.p_turn, seen)

    def _collector(self, i: int, seen: _Seen, p: CollectorParams) -> int:
        t, rng, state = self.table, self.rng, seen.state
        if seen.bumped[i] == "wall" and t.turn and rng.random() < p.p_unstick:
            turns = list(t.turn.values())
            return self._hold(turns[int(rng.integers(len(turns)))], 1, 1)
        if seen.resources is not None and len(seen.resources) and rng.random() < p.p_harvest:
            d = seen.wrap(seen.resources - state.cells[i])
            dist = np.abs(d).sum(-1)
            best = np.flatnonzero(dist == dist.min())
            return self._toward(d[best[int(rng.integers(len(best)))]], state.cells[i],
                                int(state.facing[i]), p.p_turn, seen)
        kinds = [k for k, r in p.rates.items() if r > 0 and k in t.kinds and (k != "use" or t.use)]
        rates = np.array([p.rates[k] for k in kinds])
        kind = kinds[int(rng.choice(len(kinds), p=rates / rates.sum()))]
        lo, hi = p.holds[kind]
        if kind == "use":
            return self._hold(self._pick_use(t.collect, p.p_collect), lo, hi)
        members = [a for a, k in enumerate(t.kinds) if k == kind]
        return self._hold(members[int(rng.integers(len(members)))], lo, hi)


class ClosedLoopPolicy:
    """Players acting each by its own behaviour on the real state (`act(step, state)`).

    Besides each player's own memory the policy keeps one map of known walls for all players: a
    cell into which a live player's move failed while no live player held it (at the step or after)
    counts as a wall for WALL_MEMORY steps, and a cell where a live player stands is free. A turn
    that did not turn, or a move refused into a cell showing a patch that players have stepped onto
    this episode, marks its player tired (predator_prey's stamina, a freeze): it stands still a few
    steps, and its refused moves mark no walls for TIRED_MEMORY steps. Seekers, followers and
    collectors steer round known walls. Where the state has the frame and the rewards, the policy
    also learns which cell patches pay: a patch shown on the cell a player stepped into on a
    transition that paid it a positive reward (and covering under a quarter of the map) is a
    resource, and collectors walk to the nearest cell showing one. The actions depend only on the
    seed and the states seen, so an episode's actions replay from its stored seed and states."""

    closed_loop = True

    def __init__(self, name: str, params: RLMixParams, players: list[_Player], table: ActionTable):
        self.name, self.params, self.players, self.table = name, params, players, table
        self.behaviours = [p.behaviour for p in players]
        self._prev: tuple | None = None      # the last step's (cells, facing, alive, actions)
        self._wall_time: np.ndarray | None = None
        self._tired_at = np.full(len(players), -10 * TIRED_MEMORY, dtype=np.int64)
        self._hashes: np.ndarray | None = None   # the last frame's patch hashes
        self._paid: set[int] = set()             # patch hashes that paid when entered
        self._walkable: set[int] = set()         # patch hashes a player has stepped onto
        self._dirt: set[int] = set()             # patch hashes showing the river's dirt (cleaners only)
        self._classified: set[int] = set()       # patch hashes already looked at for dirt
        self._t = 0

    def _bumps(self, state: State, prev_hashes: np.ndarray | None) -> tuple[list[str], list[bool]]:
        """Why each player's last move did not move it: "" (it moved or did not try), "player" (a
        live player held the cell), "refused" (the cell shows a patch players have walked onto:
        stamina, a freeze) or "wall"; which players are tired (a refused move or turn); the wall map
        and the walkable patches brought up to date."""
        n = len(self.players)
        if self._wall_time is None or self._wall_time.shape != (state.rows, state.cols):
            self._wall_time = np.full((state.rows, state.cols), -10 * WALL_MEMORY, dtype=np.int64)
        bumped, tired = [""] * n, [False] * n
        if self._prev is not None:
            cells, facing, alive, actions = self._prev
            both = alive & state.alive
            for i in np.flatnonzero(both):
                moved = state.cells[i] - cells[i]
                if state.torus:
                    moved = (moved + np.array([state.rows, state.cols]) // 2) % np.array(
                        [state.rows, state.cols]) - np.array([state.rows, state.cols]) // 2
                r, c = state.cells[i]
                if (prev_hashes is not None and np.abs(moved).sum() == 1
                        and 0 <= r < state.rows and 0 <= c < state.cols):
                    self._walkable.add(int(prev_hashes[r, c]))  # what the entered cell showed
            for i in np.flatnonzero(both):
                kind = self.table.kinds[actions[i]]
                if kind == "turn" and facing[i] == state.facing[i]:
                    tired[i] = True
                offset = int(self.table.offset[actions[i]])
                if offset < 0 or not np.array_equal(cells[i], state.cells[i]):
                    continue
                r, c = cells[i] + DIRS[(int(facing[i]) + offset) % 4]
                if state.torus:
                    r, c = r % state.rows, c % state.cols
                elif not (0 <= r < state.rows and 0 <= c < state.cols):
                    bumped[i] = "wall"
                    continue
                if ((cells[alive] == (r, c)).all(-1).any()
                        or (state.cells[state.alive] == (r, c)).all(-1).any()):
                    bumped[i] = "player"
                elif prev_hashes is not None and int(prev_hashes[r, c]) in self._walkable:
                    bumped[i], tired[i] = "refused", True
                else:
                    bumped[i] = "wall"
                    if self._t - self._tired_at[i] >= TIRED_MEMORY:
                        self._wall_time[r, c] = self._t
            self._tired_at[np.flatnonzero(tired)] = self._t
        live = state.cells[state.alive]
        inside = (live >= 0).all(-1) & (live[:, 0] < state.rows) & (live[:, 1] < state.cols)
        self._wall_time[live[inside, 0], live[inside, 1]] = -10 * WALL_MEMORY
        return bumped, tired

    def _resources(self, state: State, prev: np.ndarray | None, hashes: np.ndarray | None
                   ) -> np.ndarray | None:
        """Learn the paying patches from the last transition; int [K, 2] the cells showing one."""
        if hashes is None:
            return None
        if prev is not None and state.rewards is not None and self._prev is not None:
            cells, _, alive, _ = self._prev
            rewards = np.asarray(state.rewards, dtype=float).reshape(-1)
            for i in np.flatnonzero((rewards > 0) & alive & state.alive):
                r, c = state.cells[i]
                if not np.array_equal(cells[i], state.cells[i]) and 0 <= r < state.rows and 0 <= c < state.cols:
                    if (prev == prev[r, c]).mean() < 0.25:  # not the floor
                        self._paid.add(int(prev[r, c]))
        if not self._paid:
            return None
        return np.argwhere(np.isin(hashes, np.fromiter(self._paid, dtype=np.uint64)))

    def _dirt_cells(self, frame: np.ndarray, hashes: np.ndarray) -> np.ndarray:
        """int [K, 2]: the cells showing dirt, the dirt's colour drawn over another patch of a frame
        (looked at again only when the frame shows patches not seen before)."""
        if not set(np.unique(hashes).tolist()) <= self._classified:
            rows, cols = hashes.shape
            cells = frame[:rows * 8, :cols * 8].reshape(rows, 8, cols, 8, 3).transpose(0, 2, 1, 3, 4).reshape(-1, 8, 8, 3)
            keys, first = np.unique(hashes.reshape(-1), return_index=True)
            pairs = overlay_pairs(cells[first], DIRT_COLOUR)
            self._dirt.update(int(keys[k]) for k in pairs[:, 1])
            self._classified.update(int(k) for k in keys)
        if not self._dirt:
            return np.zeros((0, 2), np.int64)
        return np.argwhere(np.isin(hashes, np.fromiter(self._dirt, dtype=np.uint64)))

    def act(self, step: int | None = None, state: State | None = None) -> np.ndarray:
        """int64 [N]: this step's action index of every player, seeing `state`."""
        if state is None:
            raise ValueError(f"policy {self.name!r} is closed-loop: act(step, state) needs the state")
        n = len(self.players)
        if np.shape(state.cells) != (n, 2) or np.shape(state.facing) != (n,) or np.shape(state.alive) != (n,):
            raise ValueError(f"state must hold cells [{n},2], facing [{n}], alive [{n}], got "
                             f"{np.shape(state.cells)}, {np.shape(state.facing)}, {np.shape(state.alive)}")
        state = State(PlayerStates(np.asarray(state.cells, np.int64), np.asarray(state.facing, np.int64) % 4,
                                   np.asarray(state.alive, bool)), int(state.rows), int(state.cols),
                      bool(state.torus), state.frame, state.rewards)
        hashes = None
        if state.frame is not None:
            hashes = patch_hashes(np.asarray(state.frame))
            if hashes.shape != (state.rows, state.cols):
                hashes = None
        prev = self._hashes if self._hashes is not None and hashes is not None \
            and self._hashes.shape == hashes.shape else None
        bumped, tired = self._bumps(state, prev)
        resources = self._resources(state, prev, hashes)
        self._hashes = hashes
        deltas = state.cells[None, :, :] - state.cells[:, None, :]
        dirt = None
        if hashes is not None and "cleaner" in self.behaviours:
            dirt = self._dirt_cells(np.asarray(state.frame), hashes)
        seen = _Seen(state, deltas, self._t - self._wall_time < WALL_MEMORY, bumped, tired, resources, dirt)
        seen.deltas = seen.wrap(deltas)
        out = np.array([p.draw_held() if p.held is not None else p.act(i, seen)
                        for i, p in enumerate(self.players)], dtype=np.int64)
        self._prev = (state.cells, state.facing, state.alive, out)
        self._t += 1
        return out

    def took(self, actions: np.ndarray) -> None:
        """The actions the players really took after the last `act`, where another policy drove some
        of them (a scenario's focal players, benchmarks/scenario.py): the next step reads its bumps
        and walls from these, not from the actions this policy chose for them."""
        if self._prev is None:
            raise RuntimeError("took() before act(): no step to correct")
        actions = np.asarray(actions, dtype=np.int64)
        if actions.shape != (len(self.players),):
            raise ValueError(f"actions must have shape ({len(self.players)},), got {actions.shape}")
        self._prev = (*self._prev[:3], actions)

    def describe(self) -> dict:
        """JSON-able record for the episode header."""
        return {"name": self.name, "params": asdict(self.params), "behaviours": self.behaviours,
                "closed_loop": True, "wall_memory": WALL_MEMORY}


def rl_mix(action_set: Sequence[Mapping[str, int]], num_players: int, seed: int,
           params: RLMixParams | None = None) -> ClosedLoopPolicy:
    """The `rl_mix` policy: per player one behaviour drawn with `params.weights`, each player with
    its own random stream, all seeded by `seed`."""
    params = params or RLMixParams()
    table = ActionTable(action_set)
    names = [k for k in params.weights if k != "cleaner" or table.clean]  # cleaners only where there is a river
    w = np.array([params.weights[k] for k in names], dtype=float)
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"behaviour weights must be >= 0 with a positive sum, got {params.weights}")
    drawn = np.random.default_rng([seed, 0x51ED, 0]).choice(len(names), size=num_players, p=w / w.sum())
    players = []
    for i, k in enumerate(drawn):
        name = names[int(k)]
        rng = np.random.default_rng([seed, 0x51ED, 1 + i])
        if name == "persistent_random":
            players.append(_Player(name, params.random, table, rng,
                                   held=persistent_random(len(action_set), params.random)))
        elif name == "explorer":
            players.append(_Player(name, params.explorer, table, rng,
                                   held=explorer(action_set, params.explorer)))
        elif name in ("seeker", "blocker", "follower", "collector", "cleaner"):
            players.append(_Player(name, getattr(params, name), table, rng, collector=params.collector))
        else:
            raise ValueError(f"unknown behaviour {name!r} in the weights")
    return ClosedLoopPolicy("rl_mix", params, players, table)


@dataclass(frozen=True)
class SB3MixParams:
    share: float = 0.5     # players that follow the trained policy (per episode), the rest rl_mix
    epsilon: float = 0.1   # of its steps, a uniformly random action instead


class SB3Mix:
    """Some players follow a trained SB3 policy on their own views, the others an rl_mix behaviour."""

    def __init__(self, path: str, action_set: Sequence[Mapping[str, int]], num_players: int, seed: int,
                 params: SB3MixParams | None = None):
        from stable_baselines3 import PPO  # only a recording that asks for a trained policy needs SB3

        self.path, self.params = path, params or SB3MixParams()
        self.model = PPO.load(path, device="cpu")
        if self.model.action_space.n != len(action_set):
            raise ValueError(f"{path}: its policy has {self.model.action_space.n} actions, the substrate "
                             f"{len(action_set)}")
        self.rng = np.random.default_rng([seed, 0x5B3, 0])
        self.trained = self.rng.random(num_players) < self.params.share
        self.others = rl_mix(action_set, num_players, seed)
        self.num_actions = len(action_set)

    def act(self, step: int | None = None, state: State | None = None) -> np.ndarray:
        out = self.others.act(step, state)
        if self.trained.any():
            if state is None or state.views is None:
                raise ValueError("the sb3 policy acts on the players' views: act(step, state) needs state.views")
            views = np.asarray(state.views)[self.trained].transpose(0, 3, 1, 2)  # channels first, as trained
            picked = np.asarray(self.model.predict(views, deterministic=False)[0], np.int64)
            noise = self.rng.random(len(picked)) < self.params.epsilon
            out[self.trained] = np.where(noise, self.rng.integers(self.num_actions, size=len(picked)), picked)
        return out

    def describe(self) -> dict:
        others = self.others.describe()
        return {"name": "sb3", "path": self.path, "params": asdict(self.params), "closed_loop": True,
                "behaviours": ["sb3" if t else b for t, b in zip(self.trained, others["behaviours"])],
                "others": others}


def check_policy_name(name: str) -> str:
    """`name` if it is one of POLICIES or "sb3:PATH" with PATH an existing file, else a ValueError."""
    if name.startswith(SB3_PREFIX):
        if not Path(name[len(SB3_PREFIX):]).is_file():
            raise ValueError(f"policy {name!r}: no file {name[len(SB3_PREFIX):]!r} (sb3:PATH.zip, a saved SB3 policy)")
        return name
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; choose one of {POLICIES} or sb3:PATH.zip")
    return name


def make_policy(name: str, action_set: Sequence[Mapping[str, int]], num_players: int,
                seed: int) -> Policy | ClosedLoopPolicy | SB3Mix:
    """A policy for `num_players` players of a substrate with this action set, seeded by `seed`."""
    check_policy_name(name)
    if num_players < 1 or not action_set:
        raise ValueError(f"need >= 1 player and a non-empty action set, got {num_players} players, "
                         f"{len(action_set)} actions")
    if name == "rl_mix":
        return rl_mix(action_set, num_players, seed)
    if name.startswith(SB3_PREFIX):
        return SB3Mix(name[len(SB3_PREFIX):], action_set, num_players, seed)
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
