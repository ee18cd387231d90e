"""The real Melting Pot: a raw dmlab2d engine with per-player ground truth, and a PettingZoo env over it.

`MeltingPotEngine` drives dmlab2d directly (not Melting Pot's dm_env wrapper stack) so that it asks
only for the observations it needs: every per-player view and the global frame cost rendering time.
Ground truth comes from Melting Pot's own `LocationObserver` component, added to every avatar:
`POSITION` is (x = col, y = row) and is swapped to the project's (row, col) here, once.

A player is alive when its own RGB view is not all black: a removed (zapped, eliminated) avatar
keeps a meaningless POSITION, and its view going black is the only signal the engine exposes without
a custom Lua component (shared/MELTINGPOT.md). So the per-player views are read every step.

`RealParallelEnv` wraps the engine as a PettingZoo `ParallelEnv` with the spaces and `infos` the
dream env shares.
"""
from __future__ import annotations

import copy
import difflib
import random
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from actionparty_env.grid import HasPlayers, PlayerStates
from actionparty_env.players import PlayersEnv, check_num_players, check_positive_int, check_seed

_LOCATION_OBSERVER = {
    "component": "LocationObserver",
    "kwargs": {"objectIsAvatar": True, "alsoReportOrientation": True},
}


def substrate_names() -> tuple[str, ...]:
    """All Melting Pot substrates, sorted."""
    from actionparty_env.meltingpot_import import SUBSTRATES

    return SUBSTRATES


def check_substrate(name: str) -> None:
    """Raise a ValueError naming close matches if `name` is not a Melting Pot substrate."""
    names = substrate_names()
    if name not in names:
        close = difflib.get_close_matches(str(name), names, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(names)}"
        raise ValueError(f"unknown substrate {name!r}{hint}")


def _has_avatar(game_object: Any) -> bool:
    return any(c["component"] == "Avatar" for c in game_object.get("components", []))


def build_lab2d_settings(substrate_name: str, roles: Sequence[str], seed: int) -> tuple[Any, Any]:
    """Melting Pot's settings for `substrate_name` with a LocationObserver on every avatar.

    Returns (config, settings): the substrate's config and the unlocked, expanded settings before
    they are flattened for dmlab2d. Python's `random` is seeded with `seed` while the settings are
    built (coins draws its map size and colours from it) and restored afterwards.
    """
    from ml_collections import config_dict

    from actionparty_env.meltingpot_import import builder, get_config

    check_substrate(substrate_name)
    cfg = get_config(substrate_name)
    state = random.getstate()
    random.seed(seed)
    try:
        raw = cfg.lab2d_settings_builder(roles=tuple(roles), config=cfg)
        s = config_dict.ConfigDict(copy.deepcopy(raw)).unlock()
        builder.apply_prefab_overrides(s, None)
        for game_object in s.simulation.get("gameObjects", []):
            if _has_avatar(game_object):
                game_object["components"].append(copy.deepcopy(_LOCATION_OBSERVER))
        prefabs = s.simulation.get("prefabs", {})
        if "avatar" in prefabs:
            prefabs["avatar"]["components"].append(copy.deepcopy(_LOCATION_OBSERVER))
        builder.maybe_build_and_add_avatar_objects(s)
        builder.locate_and_overwrite_level_directory(s)
    finally:
        random.setstate(state)
    return cfg, s


class SeedWarning(UserWarning):
    """reset(seed) cannot replay this substrate's episode in the real Melting Pot."""


@dataclass
class EngineStep(HasPlayers):
    """What the engine reports after a reset or a step (player i is Melting Pot's player i+1).

    `cells`, `facing` and `alive` forward to `players` (read-only, `HasPlayers`), which owns them.
    """

    frame: np.ndarray | None  # uint8 [H, W, 3] global frame, None unless asked for
    views: np.ndarray  # uint8 [N, h, w, 3] each player's own RGB view
    players: PlayerStates  # numpy: cells int64 [N, 2] (row, col), facing int64 [N] 0..3 = N, E, S, W, alive bool [N]
    rewards: np.ndarray  # float32 [N] reward received on the last step (0 at reset)
    done: bool  # Melting Pot ended the episode


class MeltingPotEngine:
    """Raw dmlab2d Melting Pot with lazy observations.

    `build(substrate, roles, seed)` makes the settings and the first world; `reset(seed)` rebuilds the
    Lua world (as Melting Pot's reset wrapper does) and starts an episode; `step(actions)` takes an
    int array [N] of action indices in Melting Pot's order. `frame=True` asks for WORLD.RGB too.
    `default_observations=True` also reads every observation the Lua world exposes each step, as
    Melting Pot's own dm_env stack does (the benchmark's baseline); the results are the same.
    """

    def __init__(self, default_observations: bool = False) -> None:
        self.default_observations = default_observations
        self.substrate: str | None = None
        self.roles: tuple[str, ...] = ()
        self._raw: Any = None
        self._episode = 0

    @property
    def num_players(self) -> int:
        return len(self.roles)

    @property
    def num_actions(self) -> int:
        return len(self._action_table)

    def build(self, substrate_name: str, roles: Sequence[str] | None = None, seed: int = 0) -> EngineStep:
        """Set the substrate and roles (None = the default roles) and reset with `seed`."""
        from actionparty_env.meltingpot_import import get_config

        check_substrate(substrate_name)
        cfg = get_config(substrate_name)
        roles = tuple(cfg.default_player_roles if roles is None else roles)
        bad = sorted(set(roles) - set(cfg.valid_roles))
        if not roles or bad:
            raise ValueError(f"{substrate_name}: invalid roles {bad or roles}; valid: {sorted(cfg.valid_roles)}")
        self.close()
        self.substrate, self.roles = substrate_name, roles
        self._action_table = [dict(a) for a in cfg.action_set]
        return self.reset(seed)

    def reset(self, seed: int, frame: bool = True) -> EngineStep:
        """Rebuild the world with `seed` (settings, Lua seed and episode seed) and start it."""
        import dmlab2d

        from actionparty_env.meltingpot_import import builder

        if self.substrate is None:
            raise RuntimeError("call build(substrate, roles, seed) before reset")
        seed = check_seed(seed)  # 0..MAX_SEED, as in every env: never reduced silently
        _, s = build_lab2d_settings(self.substrate, self.roles, seed)
        d = builder.parse_python_settings_for_dmlab2d(s)
        d["env_seed"] = str(seed)
        self.close()
        self._raw = dmlab2d.Lab2d(builder._DMLAB2D_ROOT, d)
        self._make_action_index()
        self._raw.start(episode=self._episode, seed=seed)
        self._episode += 1
        n = self.num_players
        return self._observe(np.zeros(n, np.float32), False, frame)

    def step(self, actions: np.ndarray, frame: bool = True) -> EngineStep:
        """Advance one step with one action index per player (validated by the caller's contract)."""
        actions = np.asarray(actions)
        if actions.shape != (self.num_players,) or not np.issubdtype(actions.dtype, np.integer):
            raise ValueError(f"actions must be an int array of shape ({self.num_players},), got {actions.dtype} {actions.shape}")
        if actions.min() < 0 or actions.max() >= self.num_actions:
            raise ValueError(f"actions must be in [0, {self.num_actions}), got {actions.tolist()}")
        self._raw.act_discrete(self._action_values[actions][self._act_player, self._act_key])
        status, _ = self._raw.advance()
        rewards = np.array([self._raw.observation(f"{i}.REWARD") for i in range(1, self.num_players + 1)], np.float32)
        return self._observe(rewards.reshape(-1), status != 0, frame)

    def frame(self) -> np.ndarray:
        """The current global frame (WORLD.RGB), uint8 [H, W, 3]."""
        return np.array(self._raw.observation("WORLD.RGB"), np.uint8)

    def frame_shape(self) -> tuple[int, int, int]:
        """The global frame's shape in this build, without rendering it."""
        return tuple(int(d) for d in self._raw.observation_spec("WORLD.RGB")["shape"])

    def close(self) -> None:
        self._raw = None  # dmlab2d's Lab2d has no close(); dropping it frees the Lua world

    def _make_action_index(self) -> None:
        # dmlab2d takes one flat int32 array over names like '1.move', '1.turn', '2.move', ...; a table
        # [actions, keys] and two index arrays map [N] action indices to it in one gather.
        names = self._raw.action_discrete_names()
        keys = sorted({k for a in self._action_table for k in a})
        values = np.zeros((len(self._action_table), len(keys) + 1), np.int32)  # last column: unset keys
        for i, a in enumerate(self._action_table):
            for k, v in a.items():
                values[i, keys.index(k)] = v
        player, key = [], []
        for name in names:
            p, k = name.split(".", 1)
            player.append(int(p) - 1)
            key.append(keys.index(k) if k in keys else len(keys))
        self._action_values = values
        self._act_player = np.array(player)
        self._act_key = np.array(key)

    def _observe(self, rewards: np.ndarray, done: bool, frame: bool) -> EngineStep:
        raw, n = self._raw, self.num_players
        views = np.stack([np.asarray(raw.observation(f"{i}.RGB"), np.uint8) for i in range(1, n + 1)])
        pos = np.array([raw.observation(f"{i}.POSITION") for i in range(1, n + 1)], np.int64).reshape(n, 2)
        facing = np.array([raw.observation(f"{i}.ORIENTATION") for i in range(1, n + 1)], np.int64).reshape(n)
        if self.default_observations:  # dmlab2d.Environment reads all of them every step
            for name in raw.observation_names():
                raw.observation(name)
        return EngineStep(
            frame=self.frame() if frame else None,
            views=views,
            players=PlayerStates(pos[:, ::-1].copy(), facing, views.reshape(n, -1).any(axis=1)),
            rewards=rewards,
            done=bool(done),
        )


class RealParallelEnv(PlayersEnv):
    """The real Melting Pot substrate as a PettingZoo ParallelEnv.

    Agents are `player_0 .. player_{N-1}` (Melting Pot's players 1..N). The observation is the
    player's own RGB view (Box uint8, Melting Pot's shape), actions are `Discrete(n)` in Melting Pot's
    order, rewards are Python floats and `infos[agent]` holds `cell` (row, col), `facing` (0..3 =
    N, E, S, W) and `alive`. `state()` and `render()` return the global frame, read from the engine
    only when asked. Melting Pot's end of episode terminates all agents; `max_cycles` truncates all.
    Removed (zapped) players stay in `agents` with an all-black view and `alive=False` until they
    respawn, as in Melting Pot. Spaces, seeding and action checks are `PlayersEnv`'s (players.py).
    """

    metadata = {"render_modes": ["human", "rgb_array"], "name": "actionparty_real_v0",
                "is_parallelizable": True, "render_fps": 8}

    def __init__(self, substrate: str, num_players: int | None = None, max_cycles: int = 1000,
                 render_mode: str | None = None) -> None:
        from actionparty_env.games import get_game

        check_substrate(substrate)
        game = get_game(substrate)
        # The contract the dream checks too (players.py): the counts the catalog measured on this engine.
        num_players = check_num_players(game, num_players)
        max_cycles = check_positive_int("max_cycles", max_cycles)
        self._check_render_mode(render_mode)
        self.substrate = substrate
        self.roles = game.player_roles(num_players)
        self._init_players(game, num_players, max_cycles, render_mode, f"{substrate} (real)")
        self._engine = MeltingPotEngine()
        self._built = False
        self._said_seed = False
        self._last: EngineStep | None = None

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        """Rebuild the world. `seed` seeds the engine (and the seeds of later unseeded resets). Where
        Melting Pot does not replay an episode from its seed (`game.seed_replays`, measured by
        `python -m training.catalog`), the first seeded reset says so with a SeedWarning."""
        given = seed is not None
        seed = self._episode_seed(seed)  # a bad seed is a ValueError before anything else
        if given and not self.game.seed_replays and not self._said_seed:
            self._said_seed = True
            warnings.warn(f"{self.substrate}: the real Melting Pot does not replay an episode from its seed: "
                          f"which player gets which spawn point, and later random events, change from one "
                          f"engine build to the next (dmlab2d's hash tables are salted by memory address), "
                          f"so reset(seed=...) fixes the seed and what the settings draw from it (coins' "
                          f"colours), not the episode. The dream replays exactly (README, \"Seeds\": no real "
                          f"substrate replays here).", SeedWarning, stacklevel=2)
        if self._built:
            step = self._engine.reset(seed, frame=False)
        else:
            step = self._engine.build(self.substrate, self.roles, seed)
            self._built = True
        self._last = step
        self._begin_episode(self._engine.frame_shape())
        return self._observations(step), self._infos(step)

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """Step all agents together; every live agent must have an action (validated before acting)."""
        arr = np.array(self._checked_actions(actions), np.int64)
        step = self._engine.step(arr, frame=False)
        self._last = step
        return self._end_step(self._observations(step), step.rewards.tolist(), step.done, self._infos(step))

    def state(self) -> np.ndarray:
        """The global frame, uint8 (rows*8, cols*8, 3)."""
        if self._last is None:
            raise RuntimeError("call reset() before state()")
        return self._engine.frame()

    def close(self) -> None:
        self._engine.close()
        self._built = False
        super().close()

    def _observations(self, step: EngineStep) -> dict[str, np.ndarray]:
        return {a: step.views[i] for i, a in enumerate(self.possible_agents)}

    def _infos(self, step: EngineStep) -> dict[str, dict]:
        return self._player_infos(step.players)


def real_parallel_env(substrate: str, **kwargs: Any) -> RealParallelEnv:
    """`RealParallelEnv(substrate, num_players=None, max_cycles=1000, render_mode=None)`."""
    return RealParallelEnv(substrate, **kwargs)
