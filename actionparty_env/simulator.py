"""What the dream envs step: the `Simulator` protocol, its `StepResult`, the copy-last-frame
baseline, and the real start states a dream begins from.

A simulator holds B worlds of one game with N players each and advances all of them in one call;
`actionparty_env.model.sampler.DreamSimulator` is the world model behind this protocol and
`CopyLastFrameSimulator` the baseline (nothing ever changes). `StartStates` reads the
`start_states.npz` of a checkpoint folder (real reset states per substrate) or takes a fresh real
reset from Melting Pot.
"""
from __future__ import annotations

import functools
import inspect
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from actionparty_env.digests import record_digests
from actionparty_env.grid import CELL, HasPlayers, PlayerStates

START_STATES_FILE = "start_states.npz"
DECODINGS = ("calibrated", "argmax")  # how a dream decodes what the game leaves to chance (model/sampler.py)


@dataclass
class StepResult(HasPlayers):
    """B worlds after a reset or a step: the frames, every player's state, the rewards.

    `cells`, `facing` and `alive` are read-only properties that forward to `players` (`HasPlayers`);
    `players` owns them.
    """

    frames: torch.Tensor   # [B,H,W,3] uint8
    players: PlayerStates  # cells [B,N,2] long (row, col), facing [B,N] long 0..3 = N, E, S, W, alive [B,N] bool
    rewards: torch.Tensor  # [B,N] float32, as the game pays them (drawn from the reward head in the dream)
    expected_rewards: torch.Tensor | None = None  # [B,N] the model's expected reward (the dream only)
    terminated: torch.Tensor | None = None  # [B] bool: a rule of the world ended the episode (the dream only)


@runtime_checkable
class Simulator(Protocol):
    game: object  # a GameSpec or a substrate name
    num_worlds: int
    num_players: int
    device: torch.device

    def reset(self, frames: torch.Tensor, players: PlayerStates, worlds: torch.Tensor | None = None) -> None:
        """Start all worlds (or those where `worlds` [B] bool is set) from frames [B,H,W,3] uint8 and
        `players` ([B,N,2], [B,N], [B,N]). The signature before it, `reset(frames, cells, facing,
        alive, worlds)`, still works for one release with a DeprecationWarning (`reset_simulator`)."""

    def step(self, actions: torch.Tensor) -> StepResult:
        """Advance every world one step; actions [B,N] long."""


# -- the deprecated reset(frames, cells, facing, alive, worlds) form, for one release ----------------
def _warn_deprecated(message: str) -> None:
    """A DeprecationWarning attributed to the first caller outside this package (the user's line, so
    Python's default filters show it there)."""
    frame, level = sys._getframe(0), 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("actionparty_env."):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, DeprecationWarning, stacklevel=level)


def _old_form(cells, facing, alive, worlds=None, **rest):
    return PlayerStates(cells, facing, alive), worlds, rest


def accepts_old_reset(method):
    """Decorates a simulator's `reset(self, frames, players, worlds=None, ...)` (or `reset_codes`): a call
    in the old form, three arrays `cells, facing, alive` (positional or by name) for `players`, still
    works for one release, with a DeprecationWarning that says what to call instead."""
    lead = list(inspect.signature(method).parameters)[1]  # frames (reset) or codes (reset_codes)

    @functools.wraps(method)
    def reset(self, *args, **kwargs):
        if "cells" not in kwargs and (len(args) < 2 or isinstance(args[1], PlayerStates)):
            return method(self, *args, **kwargs)
        players, worlds, rest = _old_form(*args[1:], **kwargs)
        name = method.__qualname__  # the class that defines it (a subclass may call it by super())
        _warn_deprecated(f"{name}({lead}, cells, facing, alive, worlds) is deprecated and goes in the next "
                         f"release: call {name}({lead}, PlayerStates(cells, facing, alive), worlds) "
                         f"(actionparty_env.grid.PlayerStates)")
        return method(self, *args[:1], players=players, worlds=worlds, **rest)
    return reset


def takes_old_reset(sim) -> bool:
    """Whether `sim.reset` still has the old signature `reset(frames, cells, facing, alive, worlds=None)`:
    no `players` parameter, and four required positional ones or parameters named cells, facing, alive."""
    try:
        params = inspect.signature(sim.reset).parameters
    except (TypeError, ValueError):  # no signature to read: assume the current one
        return False
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    required = [p for p in params.values() if p.kind in kinds and p.default is inspect.Parameter.empty]
    return "players" not in params and (len(required) >= 4 or {"cells", "facing", "alive"} <= set(params))


def reset_simulator(sim: Simulator, frames, players: PlayerStates, worlds=None) -> None:
    """`sim.reset(frames, players, worlds)`, for any simulator: one of a user's written for the old
    signature is called that way for one release, with a DeprecationWarning saying how to update it."""
    if not takes_old_reset(sim):
        sim.reset(frames, players, worlds)
        return
    _warn_deprecated(f"{type(sim).__name__}.reset(frames, cells, facing, alive, worlds) is the deprecated Simulator "
                     f"signature, called so for one more release: define reset(self, frames, players, worlds=None) "
                     f"with players an actionparty_env.grid.PlayerStates (players.cells, .facing, .alive)")
    sim.reset(frames, players.cells, players.facing, players.alive, worlds)


class CopyLastFrameSimulator:
    """The copy-last-frame baseline: frames and player states never change, rewards are 0.

    A real simulator, not a stand-in: the benchmarks score it as the floor, and its cost is the
    env's own overhead (cropping views, bookkeeping) without a model.
    """

    def __init__(self, game, num_players: int, num_worlds: int = 1, device: str | torch.device = "cpu"):
        self.game = game
        self.num_players = int(num_players)
        self.num_worlds = int(num_worlds)
        self.device = torch.device(device)
        self._state: StepResult | None = None

    @accepts_old_reset
    def reset(self, frames, players: PlayerStates, worlds=None) -> None:
        b, n = self.num_worlds, self.num_players
        frames = torch.as_tensor(frames, device=self.device)
        p = players.to(self.device)
        if frames.shape[0] != b or frames.dtype != torch.uint8 or frames.ndim != 4 or \
                p.cells.shape != (b, n, 2) or p.facing.shape != (b, n) or p.alive.shape != (b, n):
            raise ValueError(f"reset expects frames uint8 [{b},H,W,3], cells [{b},{n},2], facing and alive "
                             f"[{b},{n}]; got {tuple(frames.shape)} {frames.dtype}, {tuple(p.cells.shape)}, "
                             f"{tuple(p.facing.shape)}, {tuple(p.alive.shape)}")
        new = StepResult(frames.clone(), PlayerStates(p.cells.clone(), p.facing.clone(), p.alive.clone()),
                         torch.zeros(b, n, dtype=torch.float32, device=self.device))
        if worlds is None or self._state is None:
            self._state = new
            return
        w = torch.as_tensor(worlds, device=self.device).bool()
        if new.frames.shape[1:] != self._state.frames.shape[1:]:
            raise ValueError("all worlds of a simulator share one map size")
        s = self._state
        self._state = StepResult(torch.where(w[:, None, None, None], new.frames, s.frames),
                                 new.players.where(w, s.players), s.rewards)

    def step(self, actions) -> StepResult:
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        actions = torch.as_tensor(actions, device=self.device)
        if actions.shape != (self.num_worlds, self.num_players):
            raise ValueError(f"actions must be [{self.num_worlds},{self.num_players}], got {tuple(actions.shape)}")
        s = self._state
        return StepResult(s.frames, s.players, torch.zeros_like(s.rewards))


@dataclass(frozen=True)
class StartState(HasPlayers):
    """One real reset state: the global frame and every player's cell, facing and alive flag
    (`players`; `cells`, `facing` and `alive` forward to it, read-only)."""

    frame: np.ndarray      # uint8 [H,W,3]
    players: PlayerStates  # numpy: cells int64 [N,2] (row, col), facing int64 [N], alive bool [N]

    @classmethod
    def from_infos(cls, frame: np.ndarray, infos: dict, agents) -> "StartState":
        """The state an env shows: its global frame (`state()`) and its agents' infos (cell, facing, alive)."""
        return cls(np.asarray(frame, np.uint8).copy(), PlayerStates.from_infos(infos, agents))

    @property
    def num_players(self) -> int:
        return len(self.cells)

    def problem(self) -> str | None:
        """What is wrong with this state's arrays (shapes, ranges), or None."""
        f, n = self.frame, len(self.cells)
        if f.ndim != 3 or f.shape[2] != 3 or f.shape[0] % CELL or f.shape[1] % CELL or not f.size:
            return f"frame has shape {f.shape}, not (rows*{CELL}, cols*{CELL}, 3)"
        if self.cells.shape != (n, 2) or self.facing.shape != (n,) or self.alive.shape != (n,) or n == 0:
            return (f"cells {self.cells.shape}, facing {self.facing.shape} and alive {self.alive.shape} "
                    f"are not [N, 2], [N], [N] with N >= 1")
        rows, cols = f.shape[0] // CELL, f.shape[1] // CELL
        live = self.alive
        if live.any() and ((self.cells[live] < 0).any() or (self.cells[live, 0] >= rows).any()
                           or (self.cells[live, 1] >= cols).any()):
            return f"a live player's cell is outside the {rows}x{cols} map"
        if ((self.facing < 0) | (self.facing > 3)).any():
            return "facing must be 0..3"
        return None

    def first(self, n: int) -> "StartState":
        return StartState(self.frame, self.players.first(n))


class StartStates:
    """Real start states per substrate, as stored in a checkpoint's `start_states.npz`:
    `"{substrate}/{j}/frame"`, `".../cells"`, `".../facing"`, `".../alive"` for j = 0..S-1."""

    def __init__(self, states: dict[str, list[StartState]]):
        self.states = states

    @classmethod
    def load(cls, folder: str | Path) -> "StartStates":
        path = Path(folder) / START_STATES_FILE
        if not path.is_file():
            raise ValueError(f"{path}: missing; a checkpoint folder needs start states to reset a dream "
                             f"(or pass start='real' with Melting Pot installed)")
        states: dict[str, dict[int, dict[str, np.ndarray]]] = {}
        with np.load(path, allow_pickle=False) as npz:
            for key in npz.files:
                try:
                    substrate, j, field = key.rsplit("/", 2)
                    states.setdefault(substrate, {}).setdefault(int(j), {})[field] = npz[key]
                except ValueError as e:
                    raise ValueError(f"{path}: bad entry {key!r} (expected 'substrate/j/field')") from e
        out = {}
        for substrate, by_j in states.items():
            try:
                out[substrate] = [StartState(np.asarray(d["frame"], np.uint8), PlayerStates.from_arrays(d))
                                  for _, d in sorted(by_j.items())]
            except KeyError as e:
                raise ValueError(f"{path}: {substrate} lacks the field {e}") from e
            for j, state in enumerate(out[substrate]):
                problem = state.problem()
                if problem:
                    raise ValueError(f"{path}: {substrate}/{j}: {problem}")
        return cls(out)

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / START_STATES_FILE
        arrays = {}
        for substrate, states in self.states.items():
            for j, s in enumerate(states):
                arrays.update({f"{substrate}/{j}/frame": s.frame.astype(np.uint8),
                               **s.players.arrays(f"{substrate}/{j}/")})
        np.savez_compressed(path, **arrays)
        record_digests(folder, [START_STATES_FILE])  # where the folder's config.json keeps digests
        return path

    def substrates(self) -> list[str]:
        return sorted(self.states)

    def pick(self, substrate: str, seed: int, num_players: int, shape: tuple[int, ...] | None = None) -> StartState:
        """A start state chosen by `seed`, among those with exactly `num_players` players if any,
        otherwise the first `num_players` players of a larger one (the others stay in the picture);
        `shape` keeps only frames of that shape (worlds of one simulator share a map size)."""
        if substrate not in self.states:
            raise ValueError(f"no start states for {substrate!r}; the file holds {self.substrates()}")
        states = [s for s in self.states[substrate] if shape is None or s.frame.shape == tuple(shape)]
        exact = [s for s in states if s.num_players == num_players]
        larger = [s for s in states if s.num_players > num_players]
        if not exact and not larger:
            raise ValueError(f"{substrate}: no start state with >= {num_players} players"
                             + (f" and a {shape} frame" if shape else ""))
        if not exact:
            warnings.warn(f"{substrate}: no start state with {num_players} players; using the first "
                          f"{num_players} of a larger one (the others' avatars stay drawn)", stacklevel=2)
        pool = exact or larger
        return pool[int(np.random.default_rng(seed).integers(len(pool)))].first(num_players)

    @staticmethod
    def from_real(substrate: str, seed: int, num_players: int | None = None) -> StartState:
        """A fresh real reset of Melting Pot (needs Melting Pot installed)."""
        from actionparty_env.games import get_game
        from actionparty_env.real import MeltingPotEngine  # lazy: the dream never needs Melting Pot

        game = get_game(substrate)
        n = game.num_players if num_players is None else int(num_players)
        roles = game.player_roles(n)
        step = MeltingPotEngine().build(substrate, roles, int(seed))
        return StartState(step.frame, step.players)
