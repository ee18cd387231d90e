"""The bundled checkpoint's dream is bit-identical to the recorded one for fixed seeds and actions.

A refactor of the model, the sampler or the envs must not change a single pixel: this test replays a
few substrates for a few steps and compares SHA-256 digests of every frame, view and player state with
`tests/data/golden_frames.json`. The record names the checkpoint it was made with (the digests in its
config.json); when the bundled checkpoint changes on purpose, record again with
`python tests/test_golden_frames.py` and commit the new file with the checkpoint.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

GOLDEN = Path(__file__).resolve().parent / "data" / "golden_frames.json"
SUBSTRATES = ("coins", "collaborative_cooking__asymmetric")  # small maps: seconds on a CPU
STEPS = 6
SEED = 3


def checkpoint_id() -> str:
    """One digest of the bundled checkpoint: of the SHA-256 table in its config.json."""
    from actionparty_env.digests import DIGESTS_KEY
    from actionparty_env.model.checkpoint import DEFAULT_CHECKPOINT, read_config

    table = read_config(DEFAULT_CHECKPOINT)[DIGESTS_KEY]
    return hashlib.sha256(json.dumps(table, sort_keys=True).encode()).hexdigest()[:16]


def dream_digest(substrate: str) -> str:
    """SHA-256 of a short dream of `substrate`: frames, views, rewards and player states."""
    import actionparty_env

    env = actionparty_env.parallel_env(substrate, device="cpu")
    obs, infos = env.reset(seed=SEED)
    rng = np.random.default_rng(0)
    digest = hashlib.sha256(env.state().tobytes())
    for _ in range(STEPS):
        actions = {a: int(rng.integers(env.action_space(a).n)) for a in env.agents}
        obs, rewards, _, _, infos = env.step(actions)
        digest.update(env.state().tobytes())
        digest.update(np.stack([obs[a] for a in env.possible_agents]).tobytes())
        digest.update(json.dumps([rewards, {a: {k: infos[a][k] for k in ("cell", "facing", "alive")}
                                            for a in env.possible_agents}], sort_keys=True).encode())
    return digest.hexdigest()


def record() -> dict:
    return {"checkpoint": checkpoint_id(), "seed": SEED, "steps": STEPS,
            "digests": {s: dream_digest(s) for s in SUBSTRATES}}


def test_the_bundled_dream_is_bit_identical_to_the_recorded_one(one_thread):
    golden = json.loads(GOLDEN.read_text())
    if golden["checkpoint"] != checkpoint_id():
        pytest.fail(f"the bundled checkpoint is not the one {GOLDEN.name} was recorded with; if it changed on "
                    f"purpose, record again: python tests/test_golden_frames.py")
    for substrate in SUBSTRATES:
        assert dream_digest(substrate) == golden["digests"][substrate], substrate


if __name__ == "__main__":  # record the golden digests of the bundled checkpoint
    torch.set_num_threads(1)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(record(), indent=1) + "\n")
    print(f"wrote {GOLDEN}")
