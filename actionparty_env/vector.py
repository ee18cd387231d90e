"""B dream worlds stepped in one simulator call, as a stable-baselines3 `VecEnv` of B*N slots.

Slot k is player k % N of world k // N (world-major), so PPO with parameter sharing sees every player
of every world as one env, and one `step` is one batched sampler call with no per-env Python loop.
A world that reaches `max_cycles` is reset within the same step: its slots report `done`, the last
view as `infos[k]["terminal_observation"]` and `infos[k]["TimeLimit.truncated"] = True`.

The env pickles as its constructor arguments and loads the model on first use, so a copy (e.g. in a
subprocess) never carries weights; a copy starts unreset.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

from actionparty_env.env import DreamWorlds, SimulatorArg, _positive_int
from actionparty_env.players import MAX_SEED, player_info


class DreamVecEnv(VecEnv):
    """`num_worlds` dreams of `substrate` as one SB3 VecEnv of num_worlds * num_players slots."""

    def __init__(self, substrate: str, num_worlds: int = 1, *, checkpoint: str | Path | None = None,
                 num_players: int | None = None, device: str | torch.device = "auto",
                 sampling_steps: int | None = None, temperature: float | None = None, max_cycles: int = 1000,
                 channels_first: bool = False, render_mode: str | None = None, start: str = "bundled",
                 simulator: SimulatorArg = None, seed: int | None = None, consistent_sprites: bool = True) -> None:
        self._args = dict(substrate=substrate, num_worlds=num_worlds, checkpoint=checkpoint, num_players=num_players,
                          device=device, sampling_steps=sampling_steps, temperature=temperature,
                          max_cycles=max_cycles, channels_first=channels_first, render_mode=render_mode,
                          start=start, simulator=simulator, seed=seed, consistent_sprites=consistent_sprites)
        self.max_cycles = _positive_int("max_cycles", max_cycles)
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.dream = DreamWorlds(substrate, checkpoint=checkpoint, num_players=num_players, num_worlds=num_worlds,
                                 device=device, sampling_steps=sampling_steps, temperature=temperature,
                                 start=start, simulator=simulator, consistent_sprites=consistent_sprites)
        self.game = self.dream.game
        self.num_worlds, self.num_players = self.dream.num_worlds, self.dream.num_players
        self.channels_first = bool(channels_first)
        self.render_mode = render_mode
        px = self.game.view_px
        shape = (3, px, px) if self.channels_first else (px, px, 3)
        self._slot_attrs: dict[int, dict[str, Any]] = {}
        self._rng = np.random.default_rng(seed)
        self._cycles = np.zeros(self.num_worlds, np.int64)
        self._actions: torch.Tensor | None = None
        super().__init__(self.num_worlds * self.num_players, spaces.Box(0, 255, shape, np.uint8),
                         spaces.Discrete(self.game.num_actions))

    # --- pickling by constructor arguments: copies never carry weights or worlds ---
    def __getstate__(self) -> dict:
        return dict(self._args)

    def __setstate__(self, args: dict) -> None:
        self.__init__(**args)

    # --- VecEnv ---
    def reset(self) -> VecEnvObs:
        """Start every world; seeds from `seed()` (world w uses slot w*N's seed) or the env's own rng."""
        n = self.num_players
        given = [self._seeds[w * n] for w in range(self.num_worlds)]
        if given[0] is not None:
            self._rng = np.random.default_rng(given[0])
        seeds = [int(s) if s is not None else int(self._rng.integers(MAX_SEED)) for s in given]
        views = self.dream.reset(seeds, reseed=seeds[0])
        self._cycles[:] = 0
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = self._infos()
        return self._obs(views)

    def step_async(self, actions: np.ndarray) -> None:
        """Check the actions (a ValueError leaves every world as it was) and keep them for step_wait."""
        if self.dream.last is None:
            raise RuntimeError("call reset() before step()")
        arr = np.asarray(actions)
        if arr.shape not in ((self.num_envs,), (self.num_envs, 1)):
            raise ValueError(f"actions must have shape ({self.num_envs},) (one per slot), got {arr.shape}")
        if not np.issubdtype(arr.dtype, np.integer):
            if not (np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr))):
                raise ValueError(f"actions must be integers, got dtype {arr.dtype}")
        if arr.min() < 0 or arr.max() >= self.game.num_actions:
            raise ValueError(f"actions must be in [0, {self.game.num_actions}), got min {arr.min()}, max {arr.max()}")
        self._actions = torch.from_numpy(arr.astype(np.int64).reshape(self.num_worlds, self.num_players))

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() without step_async()")
        views = self.dream.step(self._actions)
        self._actions = None
        rewards = self.dream.last.rewards.reshape(-1).float().cpu().numpy()
        infos = self._infos()
        obs = self._obs(views)
        self._cycles += 1
        ended = self._cycles >= self.max_cycles
        dones = np.repeat(ended, self.num_players)
        if ended.any():
            for k in np.flatnonzero(dones):
                infos[k]["terminal_observation"] = obs[k]
                infos[k]["TimeLimit.truncated"] = True
            seeds = [int(self._rng.integers(MAX_SEED)) for _ in range(int(ended.sum()))]
            mask = None if ended.all() else torch.from_numpy(ended)  # worlds started together end together
            obs = self._obs(self.dream.reset(seeds, worlds=mask))
            self._cycles[ended] = 0
        return obs, rewards, dones, infos

    def close(self) -> None:
        self.dream = None  # drops the simulator (and its KV cache); the shared weights stay cached

    def get_images(self) -> Sequence[np.ndarray]:
        """The generated global frame of every world."""
        if self.dream.last is None:
            raise RuntimeError("call reset() before rendering")
        return list(self.dream.last.frames.cpu().numpy())

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

    # --- helpers ---
    def _obs(self, views: torch.Tensor) -> np.ndarray:
        views = views.reshape(self.num_envs, *views.shape[2:])
        if self.channels_first:
            views = views.permute(0, 3, 1, 2)
        return np.ascontiguousarray(views.cpu().numpy())

    def _infos(self) -> list[dict]:
        last = self.dream.last
        cells = last.cells.reshape(-1, 2).tolist()
        facing, alive = last.facing.reshape(-1).tolist(), last.alive.reshape(-1).tolist()
        return [player_info(c, f, a) for c, f, a in zip(cells, facing, alive)]
