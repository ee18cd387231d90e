"""Ids for both envs: `metadata["name"]` in PettingZoo's own style (actionparty_dream_v0,
actionparty_real_v0), and both registered in PettingZoo's parallel and AEC registries by
`import actionparty_env` alone (checked in a fresh process)."""
from __future__ import annotations

import json
import subprocess
import sys

from actionparty_env.env import DreamParallelEnv
from actionparty_env.real import RealParallelEnv
from tests.conftest import subprocess_env

SCRIPT = """
import json
import actionparty_env, pettingzoo
out = {}
for kind in ("parallel", "aec"):
    for id in ("actionparty/dream-v0", "actionparty/real-v0"):
        kwargs = {"device": "cpu"} if "dream" in id else {}
        env = pettingzoo.make(kind, id, substrate="coins", max_cycles=3, **kwargs)
        env.reset(seed=0)
        if kind == "parallel":
            env.step({a: 0 for a in env.agents})
        else:
            env.step(0)
        out[f"{kind} {id}"] = [type(env.unwrapped).__name__, env.unwrapped.metadata["name"]]
print(json.dumps(out))
"""


def test_metadata_names_are_pettingzoo_style():
    assert DreamParallelEnv.metadata["name"] == "actionparty_dream_v0"
    assert RealParallelEnv.metadata["name"] == "actionparty_real_v0"
    import actionparty_env

    assert {v[1] for v in actionparty_env.IDS.values()} == {"actionparty_dream_v0", "actionparty_real_v0"}


def test_both_envs_are_made_from_pettingzoo_registries_after_import_actionparty_env_only():
    run = subprocess.run([sys.executable, "-c", SCRIPT], cwd="/", env=subprocess_env(), capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    for kind in ("parallel", "aec"):
        assert out[f"{kind} actionparty/dream-v0"] == ["DreamParallelEnv", "actionparty_dream_v0"]
        assert out[f"{kind} actionparty/real-v0"] == ["RealParallelEnv", "actionparty_real_v0"]
