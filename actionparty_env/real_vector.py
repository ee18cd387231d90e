"""K real Melting Pot worlds in subprocesses, as a stable-baselines3 `VecEnv` of K*N slots.

The conventions are `DreamVecEnv`'s (both are a `vector.WorldsVecEnv`): slot k is player k % N of
world k // N, observations are the players' own views, a world that ends is reset in the same step
with `terminal_observation` in its slots' infos, `seed(s)` gives world w the seed s + w*N for the
next `reset()`, and `infos[k]` holds the player's `cell`, `facing` and `alive`. A world ends at
`max_cycles` (`TimeLimit.truncated` True) or where Melting Pot ends the episode (False).

dmlab2d's engine cannot be pickled, so each world's `RealParallelEnv` is built inside its own worker
process from the substrate name and only numpy arrays cross the pipes (SB3's `SubprocVecEnv` runs one
single-agent gym env per process; here one process holds a world of N players behind N slots). A
step sends every world its actions, then waits for all of them, so the K engines run in parallel.
Seeds are drawn in the main process: world w gets the seed `episode_seeds[w]` and plays what
`RealParallelEnv(substrate).reset(seed=episode_seeds[w])` plays, as far as Melting Pot reproduces
an episode from its seed (the settings it draws, such as coins' map and colours, yes; the spawn order
and other Lua table orders vary between engine builds, even in one process).
"""
from __future__ import annotations

import dataclasses
import multiprocessing as mp
import signal
import traceback
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import tile_images

from actionparty_env.env import _positive_int
from actionparty_env.real import EngineStep, RealParallelEnv
from actionparty_env.vector import WorldState, WorldsVecEnv


def _worker(remote: Connection, parent_remote: Connection, substrate: str, num_players: int, max_cycles: int) -> None:
    """One world: a RealParallelEnv answering ("reset", seed), ("step", actions [N]), ("frame", None)
    and ("close", None) with ("ok", result) or ("error", traceback)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    parent_remote.close()
    try:
        env = RealParallelEnv(substrate, num_players=num_players, max_cycles=max_cycles)
    except Exception:
        remote.send(("error", traceback.format_exc()))
        return
    remote.send(("ok", None))
    while True:
        try:
            command, arg = remote.recv()
        except EOFError:  # the main process has gone
            break
        if command == "close":
            break
        try:
            if command == "reset":
                env.reset(seed=arg)
                # The engine's EngineStep (views, players, rewards, done as arrays), without
                # the global frame the first build reads: get_images() asks for it.
                result: Any = dataclasses.replace(env._last, frame=None)
            elif command == "step":
                env.step(dict(zip(env.possible_agents, arg.tolist())))
                result = env._last
            elif command == "frame":
                result = env.state()
            else:
                raise ValueError(f"unknown command {command!r}")
        except Exception:
            remote.send(("error", traceback.format_exc()))
            continue
        remote.send(("ok", result))
    env.close()
    remote.close()


def _context(start_method: str | None) -> mp.context.BaseContext:
    methods = mp.get_all_start_methods()
    if start_method is None:  # as SB3's SubprocVecEnv: forking a process that may run threads is unsafe
        start_method = "forkserver" if "forkserver" in methods else "spawn"
    elif start_method not in methods:
        raise ValueError(f"start_method must be None or one of {methods}, got {start_method!r}")
    ctx = mp.get_context(start_method)
    if start_method == "forkserver":
        # The server imports this module (torch, SB3, Melting Pot) once; each worker is then a cheap fork of
        # it instead of a fresh interpreter importing them again. No effect if the server already runs.
        ctx.set_forkserver_preload(["__main__", __name__])
    return ctx


class RealVecEnv(WorldsVecEnv):
    """`num_worlds` real Melting Pots of `substrate`, one per subprocess, as one SB3 VecEnv.

    `num_players` (default: the substrate's) and the errors for it are `RealParallelEnv`'s;
    `max_cycles` truncates every episode; `seed` seeds the env's own stream of world seeds (used
    where `seed()` gave none); `channels_first` gives observations (3, V, V); `render_mode` None or
    "rgb_array" (`render()` tiles the worlds' global frames); `start_method` is multiprocessing's
    (default "forkserver" where there is one, else "spawn"). Workers start in the constructor;
    `close()` ends them. A worker that fails or dies raises a RuntimeError naming its world and
    closes the env.
    """

    def __init__(self, substrate: str, num_worlds: int = 1, *, num_players: int | None = None,
                 max_cycles: int = 1000, channels_first: bool = False, render_mode: str | None = None,
                 seed: int | None = None, start_method: str | None = None) -> None:
        self._args = dict(substrate=substrate, num_worlds=num_worlds, num_players=num_players, max_cycles=max_cycles,
                          channels_first=channels_first, render_mode=render_mode, seed=seed,
                          start_method=start_method)
        self._remotes: list[Connection] = []
        self._procs: list[mp.process.BaseProcess] = []
        self.closed = True
        max_cycles = self._check_common(max_cycles, render_mode)
        num_worlds = _positive_int("num_worlds", num_worlds)
        # The same checks and messages as one real env (substrate, num_players); it builds no world.
        probe = RealParallelEnv(substrate, num_players=num_players, max_cycles=max_cycles)
        ctx = _context(start_method)
        self.substrate, self.roles = substrate, probe.roles
        self.start_method = ctx.get_start_method()
        self._init_worlds(probe.game, num_worlds, len(probe.possible_agents), max_cycles, channels_first,
                          render_mode, seed)
        self._last: list[EngineStep] | None = None
        self.closed = False
        for w in range(num_worlds):  # one pipe at a time: a later worker never holds an earlier one's end
            remote, work_remote = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(work_remote, remote, substrate, self.num_players, max_cycles),
                               daemon=True, name=f"RealVecEnv-{substrate}-world{w}")
            proc.start()
            work_remote.close()
            self._remotes.append(remote)
            self._procs.append(proc)
        self._receive(range(num_worlds))

    # --- talking to the workers ---
    def _send(self, worlds: Sequence[int], command: str, args: Sequence[Any]) -> None:
        if self.closed:
            raise RuntimeError("this RealVecEnv is closed; make a new one")
        for w, arg in zip(worlds, args):
            try:
                self._remotes[w].send((command, arg))
            except (BrokenPipeError, ConnectionResetError, EOFError, OSError):
                self._fail(w, None)

    def _receive(self, worlds: Sequence[int]) -> list[Any]:
        """Every asked world's answer, in order; a failed or dead worker closes the env and raises."""
        answers, failed = [], None
        for w in worlds:
            try:
                status, result = self._remotes[w].recv()
            except (EOFError, ConnectionResetError, OSError):
                status, result = "died", None
            if status != "ok" and failed is None:
                failed = (w, None if status == "died" else result)
            answers.append(result)
        if failed is not None:
            self._fail(*failed)
        return answers

    def _call(self, worlds: Sequence[int], command: str, args: Sequence[Any]) -> list[Any]:
        self._send(worlds, command, args)
        return self._receive(worlds)

    def _fail(self, world: int, error: str | None) -> None:
        """Close the env and raise for `world`: its worker's traceback, or None if the worker died."""
        if error is None:
            proc = self._procs[world]
            proc.join(timeout=1)
            what = "its worker process died" + (f" (exit code {proc.exitcode})" if proc.exitcode is not None else "")
        else:
            error = error.rstrip()
            what = f"its worker raised {error.splitlines()[-1]}"
        self.close()
        detail = f"\n\nthe worker's traceback:\n{error}" if error else ""
        raise RuntimeError(f"RealVecEnv({self.substrate!r}): world {world}: {what}; the env is closed{detail}")

    # --- WorldsVecEnv hooks ---
    def _started(self) -> bool:
        if self.closed:  # before "call reset()": a closed env has no worlds to reset
            raise RuntimeError("this RealVecEnv is closed; make a new one")
        return self._last is not None

    def _start_worlds(self, seeds: list[int], worlds: np.ndarray | None, reseed: int | None) -> np.ndarray:
        marked = list(range(self.num_worlds)) if worlds is None else np.flatnonzero(worlds).tolist()
        steps = self._call(marked, "reset", seeds)
        last = list(self._last) if self._last is not None else [None] * self.num_worlds
        for w, step in zip(marked, steps):
            last[w] = step
        return self._keep(last)

    def _step_worlds(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        worlds = range(self.num_worlds)
        steps = self._call(worlds, "step", list(actions))
        views = self._keep(steps)
        return views, np.stack([s.rewards for s in steps]), np.array([s.done for s in steps])

    def _keep(self, last: list[EngineStep]) -> np.ndarray:
        """Keep the worlds' last engine steps; their views as a new array (observations alias it)."""
        self._last = last
        return np.stack([s.views for s in last])

    def _infos(self) -> list[dict]:
        return [info for s in self._last for info in s.players.infos()]

    # --- VecEnv ---
    def get_images(self) -> Sequence[np.ndarray]:
        """The real global frame of every world (coins draws a map size per world, so sizes may differ)."""
        if not self._started():
            raise RuntimeError("call reset() before rendering")
        return self._call(range(self.num_worlds), "frame", [None] * self.num_worlds)

    def world_states(self) -> list[WorldState]:
        """Every world's real global frame (asked of the workers, as `get_images()`), its players'
        states and the rewards of its last step (0 after a reset)."""
        frames = self.get_images()
        return [WorldState(s.players, frame, s.rewards) for s, frame in zip(self._last, frames)]

    def render(self, mode: str | None = None) -> np.ndarray | None:
        """SB3's render; in "rgb_array" frames of different sizes are padded with black to tile."""
        if (mode or self.render_mode) == "rgb_array" and self.render_mode == "rgb_array":
            frames = self.get_images()
            h, w = max(f.shape[0] for f in frames), max(f.shape[1] for f in frames)
            return tile_images([np.pad(f, ((0, h - f.shape[0]), (0, w - f.shape[1]), (0, 0))) for f in frames])
        return super().render(mode)

    def close(self) -> None:
        """End every worker (politely, then by force after a few seconds); idempotent."""
        if self.closed:
            return
        self.closed = True
        for remote in self._remotes:
            try:
                remote.send(("close", None))
            except (BrokenPipeError, ConnectionResetError, EOFError, OSError):
                pass
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
        for remote in self._remotes:
            remote.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
