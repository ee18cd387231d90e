"""The part every fake `WorldsVecEnv` of the tests shares: no per-slot infos, nothing to close, no images.
A fake adds the world hooks (`_started`, `_start_worlds`, `_step_worlds`) it scripts."""
from actionparty_env.vector import WorldsVecEnv


class FakeWorlds(WorldsVecEnv):
    def _infos(self):
        return [{} for _ in range(self.num_envs)]

    def close(self):
        pass

    def get_images(self):
        return []
