"""The fake `WorldsVecEnv`s of the tests. `FakeWorlds` is the part every fake shares: no per-slot infos,
nothing to close, no images; a fake adds the world hooks (`_started`, `_start_worlds`, `_step_worlds`) it
scripts. `ScriptedWorlds` is one with known returns."""
import numpy as np

from actionparty_env.games import get_game
from actionparty_env.vector import WorldsVecEnv


class FakeWorlds(WorldsVecEnv):
    def _infos(self):
        return [{} for _ in range(self.num_envs)]

    def close(self):
        pass

    def get_images(self):
        return []


class ScriptedWorlds(FakeWorlds):
    """K worlds of `players` players with coins' spaces, where player p earns p + 1 every step, its view
    shows its number (so a slot's observation says whose it is) and world 1 ends after 2 steps (the
    game's own end). Records the joint actions and the seeds `reset()` started from."""

    def __init__(self, num_worlds: int, max_cycles: int, players: int = 2):
        self._args = dict(num_worlds=num_worlds, max_cycles=max_cycles, players=players)
        self._init_worlds(get_game("coins"), num_worlds, players, max_cycles, True, None, None)
        self.started_seeds: list[int] = []
        self.actions: list[np.ndarray] = []
        self._t = None

    def _started(self):
        return self._t is not None

    def _start_worlds(self, seeds, worlds, reseed):
        if reseed is not None:  # reset(), not an auto-reset
            self.started_seeds += seeds
        if self._t is None or worlds is None:
            self._t = np.zeros(self.num_worlds, int)
        else:
            self._t[worlds] = 0
        return self._views()

    def _step_worlds(self, actions):
        self.actions.append(np.array(actions))
        self._t += 1
        terminated = np.zeros(self.num_worlds, bool)
        terminated[1:2] = self._t[1:2] == 2
        return self._views(), self._rewards(), terminated

    def _views(self):
        views = np.zeros((self.num_worlds, self.num_players, 88, 88, 3), np.uint8)
        views[:] = np.arange(self.num_players, dtype=np.uint8)[None, :, None, None, None]
        return views

    def _rewards(self):
        return np.tile(np.arange(1.0, self.num_players + 1, dtype=np.float32), (self.num_worlds, 1))
