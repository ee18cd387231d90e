"""K worlds of N players as one stable-baselines3 `VecEnv` of K*N slots: the dream's, and what the
real one shares with it.

Slot k is player k % N of world k // N (world-major), so PPO with parameter sharing sees every player
of every world as one env. A world that ends (`max_cycles`, or the game's own end: Melting Pot's in the real
env, `games.EpisodeEnd` in the dream) is
reset within the same step: its slots report `done`, the last view as
`infos[k]["terminal_observation"]` and `infos[k]["TimeLimit.truncated"]` (True when `max_cycles` cut
the episode). `WorldsVecEnv` holds that bookkeeping once (spaces, seeds, action checks, auto-reset,
the per-slot VecEnv methods, `world_states()`); `DreamVecEnv` steps its B worlds in one batched simulator call with no
per-env Python loop, and `actionparty_env.real_vector.RealVecEnv` steps K real Melting Pots in
subprocesses.

The envs pickle as their constructor arguments; `DreamVecEnv` loads the model on first use, so a copy
(e.g. in a subprocess) never carries weights; a copy starts unreset.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

from actionparty_env.env import DreamWorlds, to_host
from actionparty_env.games import GameSpec
from actionparty_env.grid import HasPlayers, PlayerStates
from actionparty_env.players import MAX_SEED, check_positive_int, check_seed


@dataclass(frozen=True)
class WorldState(HasPlayers):
    """One world after the last reset or step, as numpy arrays: what a closed-loop policy of all its
    players sees (a scenario's background players, benchmarks/scenario.py). `cells`, `facing` and
    `alive` forward to `players` (grid.HasPlayers)."""

    players: PlayerStates  # cells int64 [N, 2] (row, col), facing int64 [N] 0..3 = N, E, S, W, alive bool [N]
    frame: np.ndarray      # uint8 [rows*8, cols*8, 3]: the world's global frame
    rewards: np.ndarray    # float32 [N]: the rewards of the step into this state (0 where an episode starts)


class SharedSlots(VecEnv):
    """SB3's per-slot VecEnv methods for a VecEnv whose slots share one env object (no env per slot).
    A subclass sets `self._slot_attrs = {}` before use."""

    _slot_attrs: dict[int, dict[str, Any]]

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """Slots share one env: a slot's value is what `set_attr` gave it, else the env's attribute."""
        slots = [self._slot_attrs.get(i, {}) for i in self._get_indices(indices)]
        return [slot[attr_name] if attr_name in slot else getattr(self, attr_name) for slot in slots]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        for i in self._get_indices(indices):
            self._slot_attrs.setdefault(i, {})[attr_name] = value

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list[Any]:
        """Calls this env's own method once per slot asked for (the slots have no env of their own)."""
        method = getattr(self, method_name)
        return [method(*method_args, **method_kwargs) for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]


class WorldsVecEnv(SharedSlots):
    """K worlds of one substrate with N players each, as a VecEnv of K*N world-major slots.

    A subclass checks its arguments (`_check_common` first), keeps them in `self._args` (the env
    pickles as them), calls `_init_worlds` and implements the hooks on numpy arrays:

    - `_started()`: whether the worlds have been reset;
    - `_start_worlds(seeds, worlds, reseed)`: start the worlds marked in `worlds` ([K] bool, None =
      all) from `seeds` (one per marked world, in world order); `reset()` passes `reseed` (the first
      world's seed), auto-resets pass None. Returns every world's views uint8 [K, N, V, V, 3];
    - `_step_worlds(actions)`: one step of every world, actions int64 [K, N] (already checked).
      Returns (views [K, N, V, V, 3], rewards float32 [K, N], terminated bool [K]);
    - `_infos()`: one `PlayerStates.infos` dict per slot for the last reset or step;
    - `close()`, `get_images()` (each world's global frame) and `world_states()` (each world's
      `WorldState`).

    Arrays a hook returns must not be changed in place later (observations handed out alias them).
    `episode_seeds` (int64 [K]) is the seed each world's current episode started from.
    """

    @staticmethod
    def _check_common(max_cycles: Any, render_mode: Any) -> int:
        max_cycles = check_positive_int("max_cycles", max_cycles)
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        return max_cycles

    def _init_worlds(self, game: GameSpec, num_worlds: int, num_players: int, max_cycles: int,
                     channels_first: bool, render_mode: str | None, seed: int | None) -> None:
        self.game = game
        self.num_worlds, self.num_players = num_worlds, num_players
        self.max_cycles = max_cycles
        self.channels_first = bool(channels_first)
        self.render_mode = render_mode
        px = self.game.view_px
        shape = (3, px, px) if self.channels_first else (px, px, 3)
        self._slot_attrs: dict[int, dict[str, Any]] = {}
        self._rng = np.random.default_rng(None if seed is None else check_seed(seed))
        self._cycles = np.zeros(self.num_worlds, np.int64)
        self.episode_seeds = np.full(self.num_worlds, -1, np.int64)  # -1: not started
        self._actions: np.ndarray | None = None
        VecEnv.__init__(self, self.num_worlds * self.num_players, spaces.Box(0, 255, shape, np.uint8),
                        spaces.Discrete(self.game.num_actions))

    # --- hooks (see the class docstring) ---
    def _started(self) -> bool:
        raise NotImplementedError

    def _start_worlds(self, seeds: list[int], worlds: np.ndarray | None, reseed: int | None) -> np.ndarray:
        raise NotImplementedError

    def _step_worlds(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _infos(self) -> list[dict]:
        raise NotImplementedError

    # --- pickling by constructor arguments: copies never carry weights or worlds ---
    def __getstate__(self) -> dict:
        return dict(self._args)

    def __setstate__(self, args: dict) -> None:
        self.__init__(**args)

    # --- VecEnv ---
    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Seeds for the next `reset()`: slot k gets seed + k, so world w starts from seed + w*N. `seed`
        is an int in 0..MAX_SEED - num_envs + 1 (every world's seed a valid env seed: players.check_seed),
        checked here; None draws one."""
        if seed is None:
            seed = int(np.random.randint(0, MAX_SEED - self.num_envs + 2))
        return super().seed(check_seed(seed, upper=MAX_SEED - self.num_envs + 1))

    def seed_worlds(self, seeds: Sequence[int]) -> None:
        """Seeds for the next `reset()`, one per world, in world order (`seed(s)` is the case
        s + w*N; this one serves a wrapper that numbers the worlds' episodes otherwise, as
        benchmarks/scenario.py does). Each is checked (players.check_seed)."""
        if len(seeds) != self.num_worlds:
            raise ValueError(f"seed_worlds needs one seed per world ({self.num_worlds}), got {len(seeds)}")
        checked = [check_seed(s, name=f"seeds[{w}]") for w, s in enumerate(seeds)]
        # reset() reads world w's seed from its first slot
        self._seeds = [checked[k // self.num_players] if k % self.num_players == 0 else None
                       for k in range(self.num_envs)]

    def reset(self) -> VecEnvObs:
        """Start every world; seeds from `seed()` (world w uses slot w*N's seed) or the env's own rng."""
        n = self.num_players
        given = [self._seeds[w * n] for w in range(self.num_worlds)]
        if given[0] is not None:
            self._rng = np.random.default_rng(given[0])
        seeds = [int(s) if s is not None else int(self._rng.integers(MAX_SEED)) for s in given]
        views = self._start_worlds(seeds, None, seeds[0])
        self.episode_seeds = np.array(seeds, np.int64)
        self._cycles[:] = 0
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = self._infos()
        return self._obs(views)

    def step_async(self, actions: np.ndarray) -> None:
        """Check the actions (a ValueError leaves every world as it was) and keep them for step_wait."""
        if not self._started():
            raise RuntimeError("call reset() before step()")
        arr = np.asarray(actions)
        if arr.shape not in ((self.num_envs,), (self.num_envs, 1)):
            raise ValueError(f"actions must have shape ({self.num_envs},) (one per slot), got {arr.shape}")
        if not np.issubdtype(arr.dtype, np.integer):
            if not (np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr))):
                raise ValueError(f"actions must be integers, got dtype {arr.dtype}")
        if arr.min() < 0 or arr.max() >= self.game.num_actions:
            raise ValueError(f"actions must be in [0, {self.game.num_actions}), got min {arr.min()}, max {arr.max()}")
        self._actions = arr.astype(np.int64).reshape(self.num_worlds, self.num_players)

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() without step_async()")
        views, rewards, terminated = self._step_worlds(self._actions)
        self._actions = None
        rewards = np.asarray(rewards, np.float32).reshape(-1)
        terminated = np.asarray(terminated, bool).reshape(self.num_worlds)
        infos = self._infos()
        obs = self._obs(views)
        self._cycles += 1
        truncated = self._cycles >= self.max_cycles
        ended = truncated | terminated
        dones = np.repeat(ended, self.num_players)
        if ended.any():
            for k in np.flatnonzero(dones):
                w = k // self.num_players
                infos[k]["terminal_observation"] = obs[k]
                infos[k]["TimeLimit.truncated"] = bool(truncated[w] and not terminated[w])
            seeds = [int(self._rng.integers(MAX_SEED)) for _ in range(int(ended.sum()))]
            worlds = None if ended.all() else ended  # worlds started together end together
            obs = self._obs(self._start_worlds(seeds, worlds, None))
            self.episode_seeds = self.episode_seeds.copy()
            self.episode_seeds[ended] = seeds
            self._cycles[ended] = 0
        return obs, rewards, dones, infos

    def world_states(self) -> list[WorldState]:
        """Every world's `WorldState` after the last reset or step (after an auto-reset: the new
        episode's start)."""
        raise NotImplementedError

    # --- helpers ---
    def _obs(self, views: np.ndarray) -> np.ndarray:
        views = np.asarray(views)
        views = views.reshape(self.num_envs, *views.shape[2:])
        if self.channels_first:
            views = views.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(views)


class DreamVecEnv(WorldsVecEnv):
    """`num_worlds` dreams of `substrate` as one SB3 VecEnv of num_worlds * num_players slots."""

    def __init__(self, substrate: str, num_worlds: int = 1, *, max_cycles: int = 1000, channels_first: bool = False,
                 render_mode: str | None = None, seed: int | None = None, **options: Any) -> None:
        """`options`: `actionparty_env.env.DreamConfig`'s fields (checkpoint, num_players, device, ...)."""
        self._args = dict(substrate=substrate, num_worlds=num_worlds, max_cycles=max_cycles,
                          channels_first=channels_first, render_mode=render_mode, seed=seed, **options)
        max_cycles = self._check_common(max_cycles, render_mode)
        self.dream = DreamWorlds(substrate, num_worlds=num_worlds, **options)
        self._players: PlayerStates | None = None  # the last reset's or step's states, on the host (`_read`)
        self._init_worlds(self.dream.game, self.dream.num_worlds, self.dream.num_players, max_cycles,
                          channels_first, render_mode, seed)

    def close(self) -> None:
        self.dream = None  # drops the simulator (and its KV cache); the shared weights stay cached

    def get_images(self) -> Sequence[np.ndarray]:
        """The generated global frame of every world."""
        if self.dream.last is None:
            raise RuntimeError("call reset() before rendering")
        return list(self.dream.last.frames.cpu().numpy())

    def world_states(self) -> list[WorldState]:
        """Every world's generated frame, its players' states and rewards (one read from the device)."""
        last = self.dream.last
        if last is None:
            raise RuntimeError("call reset() before world_states()")
        frames, rewards, cells, facing, alive = (t.numpy() for t in to_host(
            last.frames, last.rewards.float(), last.players.cells, last.players.facing, last.players.alive))
        return [WorldState(PlayerStates(cells[w], facing[w], alive[w]), frames[w], rewards[w])
                for w in range(self.num_worlds)]

    # --- WorldsVecEnv hooks: one simulator call for every world ---
    def _started(self) -> bool:
        return self.dream.last is not None

    def _start_worlds(self, seeds: list[int], worlds: np.ndarray | None, reseed: int | None) -> np.ndarray:
        mask = None if worlds is None else torch.from_numpy(worlds)
        return self._read(self.dream.reset(seeds, worlds=mask, reseed=reseed))[0]

    def _step_worlds(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        views, rewards, terminated = self._read(self.dream.step(torch.from_numpy(actions)))
        return views, rewards, self.dream.ended(terminated)  # Melting Pot's end: its clock, or a rule of the world

    def _read(self, views: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(views, rewards, the rule's `terminated` [B] or None) of the last reset or step on the host, its
        player states kept for `_infos`: read from the device with one wait (queued copies into pinned
        memory), not one a tensor."""
        last = self.dream.last
        views, rewards, cells, facing, alive, terminated = (None if t is None else t.numpy() for t in to_host(
            views, last.rewards.float(), last.players.cells, last.players.facing, last.players.alive, last.terminated))
        self._players = PlayerStates(cells, facing, alive)
        return views, rewards, terminated

    def _infos(self) -> list[dict]:
        return self._players.infos()  # [B, N] flattened: world-major slots
