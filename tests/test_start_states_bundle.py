"""More start states: training.bundle takes them from a separate dataset (`--starts LMDB`: frames 0 and
50 of every episode of a split, duplicates once), alone (`--starts` with `--out`: only the start
states of an existing checkpoint change, its digests follow) or beside a training run; the dream then
starts from all of them. A tiny hand-written dataset of real coins frames, no Melting Pot needed."""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from actionparty_env.env import parallel_env
from actionparty_env.model.checkpoint import DEFAULT_CHECKPOINT, check_checkpoint
from actionparty_env.simulator import START_STATES_FILE, StartStates
from training.artefacts import start_state_counts, start_states
from training.splits import KEY_BASE, episode_key
from training.store import StoredEpisode, open_writer, pack_frames, write_meta

SUBSTRATE = "coins"
T = 60  # steps per episode: frames 0..60, so frame 50 exists


def episode(index: int, split: str, shift: int, base) -> StoredEpisode:
    """A coins episode whose frames are a real start frame; players walk `shift` cells right."""
    frames = np.repeat(base.frame[None], T + 1, axis=0)
    frames[:, :8, :8] = shift  # one corner pixel block marks the episode (the frames differ)
    cells = np.repeat(base.cells[None].astype(np.int16), T + 1, axis=0)
    cells[:, :, 1] = (cells[:, :, 1] + shift + np.arange(T + 1)[:, None] // 25) % 17
    blob, offsets = pack_frames([zlib.compress(f.tobytes(), 1) for f in frames])
    n = len(base.cells)
    header = dict(substrate=SUBSTRATE, roles=["default"] * n, seed=index, policy={"name": "random"},
                  num_players=n, map_rows=17, map_cols=17, length=T, split=split)
    return StoredEpisode(header, blob, offsets, key=episode_key(SUBSTRATE, index),
                         actions=np.zeros((T, n), np.int16), cells=cells,
                         facing=np.repeat(base.facing[None].astype(np.int8), T + 1, axis=0),
                         alive=np.ones((T + 1, n), bool), rewards=np.zeros((T, n), np.float32))


def write_dataset(path: Path, val: list[int], train: list[int] = (), duplicate: bool = False) -> Path:
    base = StartStates.load(DEFAULT_CHECKPOINT).states[SUBSTRATE][0]
    env = open_writer(path)
    write_meta(env, {"schema_version": 1, "catalog": {}, "failed": {}, "plan": {}})
    eps = [episode(KEY_BASE["val"] + i, "val", shift, base) for i, shift in enumerate(val)]
    eps += [episode(KEY_BASE["train"] + i, "train", shift, base) for i, shift in enumerate(train)]
    if duplicate:  # the same states as the first val episode under another key
        eps.append(episode(KEY_BASE["val"] + len(val), "val", val[0], base))
    with env.begin(write=True) as txn:
        for ep in eps:
            txn.put(ep.key.encode(), ep.encode())
    env.close()
    return path


def test_start_states_are_frames_0_and_50_of_every_episode_of_the_split_once(tmp_path):
    data = write_dataset(tmp_path / "a", val=[1, 2, 3], train=[9], duplicate=True)
    states = start_states(str(data)).states[SUBSTRATE]
    assert len(states) == 6  # 3 val episodes x frames 0 and 50; the duplicate once, no train episode
    assert [int(s.frame[0, 0, 0]) for s in states] == [1, 1, 2, 2, 3, 3]
    assert states[1].cells[0, 1] == (states[0].cells[0, 1] + 2) % 17  # frame 50: two cells further
    more = write_dataset(tmp_path / "b", val=[4, 5])
    assert len(start_states([str(data), str(more)]).states[SUBSTRATE]) == 10  # several datasets
    assert len(start_states(str(data), split="train").states[SUBSTRATE]) == 2
    counts, short = start_state_counts(start_states(str(data)))
    assert counts == {SUBSTRATE: 6} and SUBSTRATE in short and len(short) == 49  # < 32 everywhere


def test_bundle_starts_only_replaces_a_checkpoints_start_states(coins_checkpoint_copy, tmp_path, capsys):
    from training.bundle import main as bundle

    ck = coins_checkpoint_copy
    weights = {p.name: p.read_bytes() for p in ck.glob("model-*")}
    data = write_dataset(tmp_path / "starts", val=list(range(1, 17)))  # 16 episodes -> 32 states
    bundle(["--starts", str(data), "--out", str(ck)])
    out = capsys.readouterr().out
    assert "32 start states of 1 substrates" in out and "fewer than 32 start states: " in out
    assert "coins (" not in out.split("fewer than 32 start states: ")[1]  # coins has its 32
    assert {p.name: p.read_bytes() for p in ck.glob("model-*")} == weights
    assert len(StartStates.load(ck).states[SUBSTRATE]) == 32
    table = json.loads((ck / "config.json").read_text())["sha256"]
    assert START_STATES_FILE in table
    check_checkpoint(ck)  # the digests follow the new file
    env = parallel_env(SUBSTRATE, checkpoint=ck, device="cpu")
    starts = {env.reset(seed=s)[1]["player_0"]["cell"] + (int(env.state()[0, 0, 0]),) for s in range(96)}
    assert len(starts) >= 24  # the dream now starts from (nearly) all 32, not 2


def test_bundle_without_start_episodes_says_so(coins_checkpoint_copy, tmp_path):
    from training.bundle import main as bundle

    ck = coins_checkpoint_copy
    before = (ck / "start_states.npz").read_bytes()
    empty = write_dataset(tmp_path / "empty", val=[], train=[1])
    with pytest.raises(SystemExit, match="no val episodes"):
        bundle(["--starts", str(empty), "--out", str(ck)])
    assert (ck / "start_states.npz").read_bytes() == before  # unchanged


def test_the_bundled_checkpoint_starts_from_32_real_states_per_substrate():
    from actionparty_env.games import load_catalog
    from actionparty_env.model.checkpoint import DEFAULT_CHECKPOINT

    counts = {name: len(states) for name, states in StartStates.load(DEFAULT_CHECKPOINT).states.items()}
    assert set(counts) == set(load_catalog())  # every substrate
    short = {name: k for name, k in counts.items() if k < 32}
    # only maps whose validation episodes can end before frame 50 have fewer (README says so)
    assert all(name.startswith("collaborative_cooking__") and k >= 28 for name, k in short.items()), short
