"""Melting Pot's scenarios as a VecEnv: in every world K focal players act by the agent, the others
by background bots (`training.policies.rl_mix`).

    env = ScenarioVecEnv(RealVecEnv("clean_up", 8, channels_first=True), focal=1)   # 8 slots
    env = ScenarioVecEnv(DreamVecEnv("clean_up", 64, channels_first=True), focal=2) # 128 slots

Melting Pot evaluates a policy as focal players among background players; in clean_up that is the
only way anyone scores within a PPO budget, since apples grow only while someone cleans the river
and self-play never learns to clean. `rl_mix`'s cleaners do (training/policies.py).

`ScenarioVecEnv` wraps a `WorldsVecEnv` of W worlds of N players (the real game or the dream) and
is an SB3 VecEnv of W*K slots, world-major: slot k is focal player k % K of world k // K. Its
observations, rewards, dones and infos are the focal players' (the inner env's, picked), and its
actions are theirs; every other player acts by the world's own `rl_mix`, which is closed-loop: after
every reset and step it reads the world's global frame, every player's cell, facing and alive flag
and the last rewards from the inner env's `world_states()`, and picks the actions of all N players,
of which the focal players' are replaced by the agent's (and told back to it, `took`, so that its
wall map reads their bumps from what they did).

Which players are focal: the K consecutive players from the episode's seed mod N on (wrapping), so
the rule depends only on the seed. Scoring on the same seeds puts every arm in the same slots among
the same bots (the bots' behaviours are drawn from the seed too); successive evaluation seeds rotate
the focal slot through every player, and training's random seeds draw it uniformly. A fixed slot
would have the policy only ever see itself in one avatar's colour and at one slot's place in the
game's lists, where Melting Pot's scenarios put focal players in any slot.

Each world's episode restarts its background: a world that ends (at the inner env's `max_cycles`,
or by the game) gets a new `rl_mix` seeded by its new episode's seed, and new focal slots; the step
that ends it returns the old focal players' rewards, dones and infos (`terminal_observation`
included) and the new focal players' first observations. `seed(s)` gives world w the seed s + w*K
(`WorldsVecEnv.seed_worlds`), so that `benchmarks.rl.episode_returns`, reading `num_worlds` and
`num_players` (= K), numbers the scored episodes as it does for the self-play envs.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from actionparty_env.grid import CELL
from actionparty_env.players import MAX_SEED, check_positive_int, check_seed
from actionparty_env.vector import SharedSlots, WorldsVecEnv
from training.policies import ClosedLoopPolicy, State, rl_mix

BACKGROUNDS = ("rl_mix",)
FOCAL_RULE = "the K consecutive players from the episode's seed mod N on (wrapping)"


class ScenarioVecEnv(SharedSlots):
    """K focal slots per world of `env`, the other players by `background` (see the module docstring).

    `num_worlds` is the inner env's; `num_players` is K, the focal players per world (the slots a
    world has here). `focal` must leave at least one background player (1 <= K < N).
    """

    def __init__(self, env: WorldsVecEnv, focal: int = 1, background: str = "rl_mix") -> None:
        if not isinstance(env, WorldsVecEnv):
            raise TypeError(f"env must be a WorldsVecEnv (RealVecEnv, DreamVecEnv), got {type(env).__name__}")
        if background not in BACKGROUNDS:
            raise ValueError(f"background must be one of {BACKGROUNDS}, got {background!r}")
        if env.num_players < 2:
            raise ValueError(f"{env.game.name} has {env.num_players} player: no room for background players")
        self.env, self.background, self.game = env, background, env.game
        self.num_worlds = env.num_worlds
        self.num_players = check_positive_int("focal", focal, upper=env.num_players - 1)
        self.render_mode = env.render_mode
        self._slot_attrs = {}
        self._torus = bool(env.game.view.get("torus", False))
        self._policies: list[ClosedLoopPolicy | None] = [None] * self.num_worlds
        self.focal_slots = np.zeros((self.num_worlds, self.num_players), np.int64)  # [W, K] the focal players
        self._joint = np.zeros((self.num_worlds, env.num_players), np.int64)  # all players' next actions
        self._t = np.zeros(self.num_worlds, np.int64)  # steps into each world's episode
        self._started = False
        super().__init__(self.num_worlds * self.num_players, env.observation_space, env.action_space)

    @property
    def episode_seeds(self) -> np.ndarray:
        """int64 [W]: the seed each world's current episode started from (the inner env's)."""
        return self.env.episode_seeds

    # --- VecEnv ---
    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Seeds for the next `reset()`: world w starts from seed + w*K (slot k's seed is seed + k);
        None draws one."""
        upper = MAX_SEED - self.num_envs + 1
        seed = int(np.random.randint(0, upper + 1)) if seed is None else check_seed(seed, upper=upper)
        self.env.seed_worlds([seed + w * self.num_players for w in range(self.num_worlds)])
        return [seed + k for k in range(self.num_envs)]

    def reset(self) -> VecEnvObs:
        """Start every world; each draws its focal players and its background from its episode's seed."""
        obs = self.env.reset()
        self._start(np.ones(self.num_worlds, bool))
        self._started = True
        slots = self._slots()
        self.reset_infos = [self.env.reset_infos[k] for k in slots]
        return obs[slots]

    def step_async(self, actions: np.ndarray) -> None:
        """The focal players' actions ([W*K], world-major) into the joint actions of every world; the
        inner env checks their values (a ValueError leaves every world and bot as it was)."""
        if not self._started:
            raise RuntimeError("call reset() before step()")
        arr = np.asarray(actions)
        if arr.shape not in ((self.num_envs,), (self.num_envs, 1)):
            raise ValueError(f"actions must have shape ({self.num_envs},) (one per focal slot), got {arr.shape}")
        joint = self._joint.astype(np.result_type(arr.dtype, np.int64))  # a float action stays one, to be refused
        joint[np.arange(self.num_worlds)[:, None], self.focal_slots] = arr.reshape(self.num_worlds, self.num_players)
        self.env.step_async(joint.reshape(-1))
        for policy, taken in zip(self._policies, joint.astype(np.int64)):
            policy.took(taken)

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.env.step_wait()
        old = self._slots()
        self._start(dones.reshape(self.num_worlds, self.env.num_players)[:, 0])  # the worlds that ended restart
        return obs[self._slots()], rewards[old], dones[old], [infos[k] for k in old]

    def close(self) -> None:
        self.env.close()

    def get_images(self) -> Sequence[np.ndarray]:
        return self.env.get_images()

    # --- the background ---
    def _start(self, worlds: np.ndarray) -> None:
        """New focal slots and a new background for the worlds marked in `worlds` ([W] bool), from
        their episodes' seeds; then every world's next background actions."""
        n, k = self.env.num_players, self.num_players
        for w in np.flatnonzero(worlds):
            seed = int(self.env.episode_seeds[w])
            self.focal_slots[w] = (seed + np.arange(k)) % n
            self._policies[w] = rl_mix(self.game.action_set, n, seed)
            self._t[w] = 0
        self._plan()

    def _plan(self) -> None:
        """Every world's background picks all its players' actions for the next step from the world's
        state now (the focal players' are replaced in `step_async`)."""
        for w, (policy, s) in enumerate(zip(self._policies, self.env.world_states())):
            rows, cols = s.frame.shape[0] // CELL, s.frame.shape[1] // CELL
            self._joint[w] = policy.act(int(self._t[w]), State(s.players, rows, cols, self._torus, s.frame, s.rewards))
        self._t += 1

    def _slots(self) -> np.ndarray:
        """int [W*K]: the inner env's slots of the focal players, world-major."""
        return (np.arange(self.num_worlds)[:, None] * self.env.num_players + self.focal_slots).reshape(-1)
