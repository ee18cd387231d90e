"""What the real and the dream PettingZoo envs share: the players, their spaces, and checking input.

Both envs are `player_0 .. player_{N-1}` of one substrate, observe Melting Pot's per-player view
(Box uint8) and act in Melting Pot's action set (Discrete). `PlayersEnv` holds that part once, so the
two envs accept and reject the same input with the same messages and report the same `infos`.
A subclass builds its world, calls `_init_players`, and implements `reset`, `step` and `state`.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from actionparty_env.games import GameSpec
from actionparty_env.grid import CELL, PlayerStates

MAX_SEED = 2**31 - 1  # seeds are ints in 0..MAX_SEED in every env (dmlab2d takes a signed 32-bit seed)


# --- the contract both envs (and their vector forms) check, with the same messages ---
def check_seed(seed: Any, name: str = "seed", upper: int = MAX_SEED) -> int:
    """A seed as an int in 0..`upper` (Python or numpy int, not bool), or a ValueError."""
    if isinstance(seed, np.ndarray) and seed.ndim == 0:
        seed = seed[()]
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) <= upper:
        raise ValueError(f"{name} must be an int in 0..{upper} or None, got {seed!r}")
    return int(seed)


def check_positive_int(name: str, value: Any, upper: int | None = None) -> int:
    """`value` as an int >= 1 (and <= `upper`), or a ValueError naming `name`."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1 or \
            (upper is not None and value > upper):
        bound = f" in 1..{upper}" if upper is not None else " >= 1"
        raise ValueError(f"{name} must be an int{bound}, got {value!r}")
    return int(value)


def player_counts(game: GameSpec) -> tuple[int, ...]:
    """The player counts a substrate takes (with its default roles repeated): the catalog's, measured
    on the real engine by `python -m training.catalog`; 1..default where the catalog has none."""
    return game.player_counts or tuple(range(1, game.num_players + 1))


def _counts_text(counts: Sequence[int]) -> str:
    runs, start = [], counts[0]
    for prev, n in zip(counts, [*counts[1:], None]):
        if n != prev + 1:
            runs.append(str(start) if start == prev else f"{start}..{prev}")
            start = n
    return ", ".join(runs)


def check_num_players(game: GameSpec, num_players: Any) -> int:
    """`num_players` (None: the substrate's default) as an int the substrate takes, or a ValueError
    saying which counts it takes. The dream and the real env both accept exactly these."""
    if num_players is None:
        return game.num_players
    if isinstance(num_players, np.ndarray) and num_players.ndim == 0:
        num_players = num_players[()]
    if isinstance(num_players, (bool, np.bool_)) or not isinstance(num_players, (int, np.integer)):
        raise ValueError(f"num_players must be an int or None, got {num_players!r}")
    counts = player_counts(game)
    if int(num_players) not in counts:
        n = int(num_players)
        raise ValueError(f"{game.name} does not take {n} player{'' if n == 1 else 's'}: it takes "
                         f"{_counts_text(counts)} (default {game.num_players})")
    return int(num_players)


def agent_action(agent: str, value: Any, num_actions: int) -> int:
    """One agent's action as an int, or a ValueError naming what is wrong with it."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"action for {agent} must be an int in [0, {num_actions}), got {type(value).__name__} {value!r}")
    if not 0 <= int(value) < num_actions:
        raise ValueError(f"action for {agent} must be in [0, {num_actions}), got {int(value)}")
    return int(value)


class PlayersEnv(ParallelEnv):
    """The PettingZoo plumbing of a one-world env of N players: spaces, seeds, action checks, render."""

    def _check_render_mode(self, render_mode: str | None) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")

    def _init_players(self, game: GameSpec, num_players: int, max_cycles: int, render_mode: str | None,
                      title: str) -> None:
        """Agents, spaces, the seed stream and the window (`title`) of validated arguments."""
        self.game = game
        self.max_cycles = max_cycles
        self.render_mode = render_mode
        self.possible_agents = [f"player_{i}" for i in range(num_players)]
        self.agents: list[str] = []
        self.num_cycles = 0
        # Spaces are built once: PettingZoo requires the same object on every call.
        px = game.view_px
        self._observation_spaces = {a: spaces.Box(0, 255, (px, px, 3), np.uint8) for a in self.possible_agents}
        self._action_spaces = {a: spaces.Discrete(game.num_actions) for a in self.possible_agents}
        # The global frame's space: the catalog's map until the first reset, then each build's frame.
        self._state_space = spaces.Box(0, 255, (game.map_rows * CELL, game.map_cols * CELL, 3), np.uint8)
        self._seeds = np.random.default_rng()
        self._window = None
        if render_mode == "human":
            from actionparty_env.render import Window

            self._window = Window(title, fps=self.metadata["render_fps"])

    def observation_space(self, agent: str) -> spaces.Box:
        self._check_agent(agent)
        return self._observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Discrete:
        self._check_agent(agent)
        return self._action_spaces[agent]

    @property
    def state_space(self) -> spaces.Box:
        """`Box(0, 255, (rows*8, cols*8, 3), uint8)`: the space of `state()`, the global frame of the
        current build. One object for the env's life: where a build's map differs in size (a substrate
        whose settings draw the map per build) `reset` resizes it in place, so a wrapper that keeps it
        (PettingZoo's `parallel_to_aec`) stays right. Before the first reset it is the catalog's map.
        (Coins draws its map size per build but pads every frame to its largest, 17x17 cells.)"""
        return self._state_space

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            gymnasium.logger.warn("render() called without a render_mode; pass render_mode='rgb_array' or 'human'")
            return None
        frame = self.state()
        if self.render_mode == "rgb_array":
            return frame
        self._window.show(frame)
        return None

    def close(self) -> None:
        if self._window is not None:
            self._window.close()

    def _check_agent(self, agent: str) -> None:
        if agent not in self._action_spaces:
            raise ValueError(f"unknown agent {agent!r}; agents are {self.possible_agents[0]}..{self.possible_agents[-1]}")

    def _episode_seed(self, seed: int | None) -> int:
        """The seed of the episode reset() starts: a given `seed` (`check_seed`: an int in 0..MAX_SEED)
        also seeds later unseeded resets; without one, the next seed of that stream."""
        if seed is None:
            return int(self._seeds.integers(MAX_SEED))
        seed = check_seed(seed)
        self._seeds = np.random.default_rng(seed)
        return seed

    def _begin_episode(self, frame_shape: Sequence[int]) -> None:
        """Every agent is live again and `state_space` is this build's frame shape; called once the
        world is reset (render() reads it)."""
        frame_shape = tuple(int(d) for d in frame_shape)
        space = self._state_space
        if space.shape != frame_shape:  # the same object, resized (see state_space)
            rng = space._np_random
            spaces.Box.__init__(space, 0, 255, frame_shape, np.uint8)
            space._np_random = rng
        self.agents = list(self.possible_agents)
        self.num_cycles = 0
        if self.render_mode == "human":
            self.render()

    def _checked_actions(self, actions: dict[str, Any]) -> list[int]:
        """Every live agent's action, in agent order; a ValueError before anything moves."""
        if not self.agents:
            raise RuntimeError("no live agents: call reset() first (the episode has ended or not begun)")
        if not isinstance(actions, dict):
            raise ValueError(f"actions must be a dict {{agent: int}}, got {type(actions).__name__}")
        unknown = sorted(set(actions) - set(self.agents), key=str)
        if unknown:
            raise ValueError(f"unknown agent(s) {unknown}; agents are {self.agents[0]}..{self.agents[-1]}")
        missing = [a for a in self.agents if a not in actions]
        if missing:
            raise ValueError(f"missing action(s) for {missing}; every agent must act each step")
        return [agent_action(a, actions[a], self.game.num_actions) for a in self.agents]

    def _end_step(self, obs: dict[str, np.ndarray], rewards: Sequence[float], terminated: bool,
                  infos: dict[str, dict]) -> tuple[dict, dict, dict, dict, dict]:
        """Count the cycle and give step()'s five dicts; every agent ends together (the world's end
        terminates, `max_cycles` truncates)."""
        self.num_cycles += 1
        truncated = self.num_cycles >= self.max_cycles
        rewards = {a: float(rewards[i]) for i, a in enumerate(self.agents)}
        terminations = {a: terminated for a in self.agents}
        truncations = {a: truncated for a in self.agents}
        if terminated or truncated:
            self.agents = []
        if self.render_mode == "human":
            self.render()
        return obs, rewards, terminations, truncations, infos

    def _player_infos(self, players: PlayerStates) -> dict[str, dict]:
        """`infos` of every agent from its world's player states ([N, 2], [N], [N]): `PlayerStates.infos`."""
        return dict(zip(self.possible_agents, players.infos()))
