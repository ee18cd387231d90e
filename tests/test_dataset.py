"""The LMDB episode store (training/store.py), the clip reader (training/clips.py) and the dataset check
(training/check.py), on small episodes written through the real store (the recorder's tests cover real
Melting Pot episodes)."""
from __future__ import annotations

import io
import json
import zlib

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from actionparty_env.grid import CELL
from training import check
from training.check import check_dataset
from training.clips import BucketBatchSampler, ClipDataset, collate_clips
from training.splits import KEY_BASE, episode_key
from training.store import (ARRAYS, CorruptEpisodeError, StoredEpisode, list_episodes, open_writer, pack_frames,
                            read_episode, write_meta)

CATALOG = {"alpha": {"action_names": ["NOOP", "FORWARD", "TURN_LEFT"]},
           "beta": {"action_names": ["NOOP", "FORWARD", "TURN_LEFT", "FIRE_ZAP"]}}
# (substrate, index, split, T, N, rows, cols)
EPISODES = [("alpha", 0, "train", 6, 2, 3, 4), ("alpha", 1, "train", 4, 3, 3, 4),
            ("beta", 0, "train", 5, 2, 2, 5), ("beta", KEY_BASE["val"], "val", 5, 2, 2, 5)]


def write_episode(env, episode: StoredEpisode) -> bool:
    """Store one episode in one transaction, as the recorder does; False (nothing written) if the key exists."""
    with env.begin(write=True) as txn:
        return txn.put(episode.key.encode(), episode.encode(), overwrite=False)


def make_episode(substrate, index, split, t, n, rows, cols, rng) -> tuple[StoredEpisode, np.ndarray]:
    frames = rng.integers(0, 6, (t + 1, rows * CELL, cols * CELL, 3), dtype=np.uint8)
    blob, offsets = pack_frames([zlib.compress(f.tobytes(), 6) for f in frames])
    header = dict(substrate=substrate, roles=["default"] * n, seed=index, policy={"name": "mix"},
                  num_players=n, map_rows=rows, map_cols=cols, length=t, split=split)
    ep = StoredEpisode(
        header, blob, offsets, key=episode_key(substrate, index),
        actions=rng.integers(0, 3, (t, n)).astype(np.int16),
        cells=rng.integers(0, 9, (t + 1, n, 2)).astype(np.int16),
        facing=rng.integers(0, 4, (t + 1, n)).astype(np.int8),
        alive=rng.random((t + 1, n)) < 0.8, rewards=rng.normal(size=(t, n)).astype(np.float32))
    return ep, frames


@pytest.fixture()
def data(tmp_path):
    rng = np.random.default_rng(0)
    env = open_writer(tmp_path)
    write_meta(env, {"schema_version": 1, "catalog": CATALOG, "failed": {},
                     "plan": {"train": {"alpha": {"episodes": 2}, "beta": {"episodes": 1}},
                              "val": {"beta": {"episodes": 1}}}})
    episodes = {}
    for spec in EPISODES:
        ep, frames = make_episode(*spec, rng)
        assert write_episode(env, ep)
        episodes[ep.key] = (ep, frames)
    env.close()
    return tmp_path, episodes


def corrupt(path, key: str, edit) -> None:
    env = open_writer(path)
    with env.begin(write=True) as txn:
        txn.put(key.encode(), edit(bytes(txn.get(key.encode()))))
    env.close()


def test_roundtrip_and_listing(data):
    path, episodes = data
    assert list_episodes(path) == sorted(episodes)
    assert list_episodes(path, split="val") == ["ep/beta/800000"]
    assert list_episodes(path, split="train", substrate="alpha") == ["ep/alpha/000000", "ep/alpha/000001"]
    for key, (ep, frames) in episodes.items():
        got = read_episode(path, key)
        assert got.header == ep.header
        assert np.array_equal(got.frames, frames)
        for name in ARRAYS:
            assert getattr(got, name).dtype == getattr(ep, name).dtype
            assert np.array_equal(getattr(got, name), getattr(ep, name))
    # a second write of an existing key is refused and changes nothing
    env = open_writer(path)
    other, _ = make_episode("alpha", 0, "train", 2, 1, 1, 1, np.random.default_rng(1))
    assert not write_episode(env, other)
    env.close()
    assert read_episode(path, "ep/alpha/000000").header["length"] == 6
    with pytest.raises(ValueError, match="unknown split"):
        list_episodes(path, split="holdout")


def test_encode_refuses_inconsistent_arrays():
    ep, _ = make_episode("alpha", 0, "train", 4, 2, 2, 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="actions"):
        StoredEpisode(**{**ep.__dict__, "actions": ep.actions[:-1]}).encode()
    with pytest.raises(ValueError, match="split"):
        StoredEpisode(**{**ep.__dict__, "key": "ep/alpha/800000"}).encode()


def test_clips_match_the_episodes(data):
    path, episodes = data

    class Codebook:  # any object with encode(frame) -> int64 [R, C]
        def encode(self, frame):
            return frame[::8, ::8, 0].astype(np.int64)

    clips = ClipDataset(path, clip_len=3, split="train", codebook=Codebook())
    # T - L + 1 clips per train episode: frames t..t+2 with their actions all defined
    assert len(clips) == (6 - 2) + (4 - 2) + (5 - 2)
    assert clips.games == ["alpha", "beta"]
    seen = set()
    for i in range(len(clips)):
        item = clips[i]
        key, s = clips.keys[clips.episode_index[i]], int(clips.start[i])
        ep, frames = episodes[key]
        seen.add((key, s))
        assert torch.equal(item["frames"], torch.from_numpy(frames[s:s + 3]))
        assert torch.equal(item["codes"], torch.from_numpy(frames[s:s + 3, ::8, ::8, 0].astype(np.int64)))
        assert torch.equal(item["actions"], torch.from_numpy(ep.actions[s:s + 3].astype(np.int64)))
        assert torch.equal(item["cells"], torch.from_numpy(ep.cells[s:s + 3].astype(np.int64)))
        assert torch.equal(item["alive"], torch.from_numpy(ep.alive[s:s + 3]))
        assert torch.equal(item["rewards"], torch.from_numpy(ep.rewards[s:s + 3]))
        assert item["present"].tolist() == [True] * ep.header["num_players"]
        assert item["game"] == clips.games.index(ep.header["substrate"])
    assert len(seen) == len(clips)
    assert len(ClipDataset(path, clip_len=3, split="val")) == 5 - 2
    assert len(ClipDataset(path, clip_len=3, split="train", substrates=["beta"])) == 3
    with pytest.raises(ValueError, match="gamma"):
        ClipDataset(path, clip_len=3, split="train", substrates=["gamma"])


def test_bucket_sampler(data):
    path, _ = data
    clips = ClipDataset(path, clip_len=2, split="train")
    sampler = BucketBatchSampler(clips, batch_size=3, seed=7)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(clips)))  # each clip once
    for b in batches:
        assert len({tuple(clips.sizes[i]) for i in b}) == 1  # one map size per batch
    assert batches == list(BucketBatchSampler(clips, batch_size=3, seed=7))  # deterministic
    sampler.set_epoch(1)
    assert list(sampler) != batches
    full = BucketBatchSampler(clips, batch_size=3, seed=7, drop_last=True)
    assert all(len(b) == 3 for b in full)
    ranks = [list(BucketBatchSampler(clips, 2, seed=7, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) > 0
    assert not {i for b in ranks[0] for i in b} & {i for b in ranks[1] for i in b}


def test_collate_pads_players_and_loader_workers_agree(data):
    path, episodes = data
    clips = ClipDataset(path, clip_len=2, split="train", substrates=["alpha"])
    n = [clips[i]["present"].numel() for i in range(len(clips))]
    i2, i3 = n.index(2), n.index(3)
    batch = collate_clips([clips[i2], clips[i3]])
    assert batch["present"].tolist() == [[True, True, False], [True, True, True]]
    assert batch["actions"].shape == (2, 2, 3) and batch["cells"].shape == (2, 2, 3, 2)
    assert batch["alive"][0, :, 2].tolist() == [False, False]
    assert batch["frames"].shape == (2, 2, 24, 32, 3)
    with pytest.raises(ValueError, match="frame shapes"):
        collate_clips([clips[0], ClipDataset(path, clip_len=2, split="train", substrates=["beta"])[0]])
    # LMDB opened once per worker: 0 and 2 workers give the same batches
    clips = ClipDataset(path, clip_len=2, split="train")
    runs = []
    for workers in (0, 2):
        loader = DataLoader(clips, batch_sampler=BucketBatchSampler(clips, 2, seed=3),
                            collate_fn=collate_clips, num_workers=workers)
        runs.append([b["frames"] for b in loader])
    assert all(torch.equal(a, b) for a, b in zip(*runs)) and len(runs[0]) == len(runs[1])


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:-40], "bad record"),                                   # truncated
    (lambda b: b[:len(b) // 2] + bytes([b[len(b) // 2] ^ 0xFF]) + b[len(b) // 2 + 1:], "episode"),
])
def test_corrupt_record_is_named(data, damage, message, capsys):
    path, _ = data
    key = "ep/alpha/000001"
    corrupt(path, key, damage)
    with pytest.raises(CorruptEpisodeError, match=key):
        read_episode(path, key)
    report = check_dataset(path, progress=False)
    assert [p for p in report.problems if key in p], report.problems
    assert len(report.problems) == 1
    assert check.main([str(path)]) == 1
    assert key in capsys.readouterr().out
    with pytest.raises(CorruptEpisodeError, match=key):  # the reader fails on first touch
        clips = ClipDataset(path, clip_len=2, split="train", substrates=["alpha"])
        [clips[i] for i in range(len(clips))]


def test_header_mismatch_and_missing_are_named(data, capsys):
    path, episodes = data
    ep, _ = episodes["ep/beta/000000"]

    def lie_about_length(_: bytes) -> bytes:  # valid npz, header disagrees with the arrays
        buf = io.BytesIO()
        header = {**ep.header, "length": ep.header["length"] + 1}
        np.savez(buf, header=np.frombuffer(json.dumps(header).encode(), np.uint8),
                 frame_blob=ep.frame_blob, frame_offsets=ep.frame_offsets,
                 **{n: getattr(ep, n) for n in ARRAYS})
        return buf.getvalue()

    corrupt(path, "ep/beta/000000", lie_about_length)
    env = open_writer(path)
    with env.begin(write=True) as txn:
        txn.delete(b"ep/alpha/000001")
    env.close()
    report = check_dataset(path, progress=False)
    assert any("ep/beta/000000" in p and "actions" in p for p in report.problems), report.problems
    assert any("ep/alpha/000001" in p and "missing" in p for p in report.problems), report.problems
    with pytest.raises(CorruptEpisodeError, match="ep/beta/000000"):
        read_episode(path, "ep/beta/000000")
    assert check.main([str(path)]) == 1


def test_check_reports_counts_and_histograms(data, capsys):
    path, episodes = data
    report = check_dataset(path, progress=False)
    assert report.problems == [] and report.schema_version == 1
    assert report.counts == {("alpha", "train"): 2, ("beta", "train"): 1, ("beta", "val"): 1}
    expected = np.bincount(np.concatenate([ep.actions.ravel() for k, (ep, _) in episodes.items()
                                           if k.startswith("ep/alpha")]), minlength=3)
    assert report.histograms["alpha"].tolist() == expected.tolist()
    assert check.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "schema version: 1" in out and "FORWARD" in out and "0 problem(s)" in out
