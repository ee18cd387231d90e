"""A torch dataset of clips from the episode store (training/store.py), its bucketed batch sampler and
the collate function.

`ClipDataset` yields clips of `clip_len` consecutive frames: frames t..t+L-1 with the actions taken
at them (the last action leads out of the clip), the states at them and the rewards of those
actions, so a clip may start at t = 0..T-L. `BucketBatchSampler` batches clips of one map size;
`collate_clips` pads the player axis.
"""
from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from training.splits import SPLITS
from training.store import decode_episode, read_headers, read_meta, reader


class ClipDataset(Dataset):
    """Clips of `clip_len` consecutive frames from the episodes of one split.

    Item: `frames` uint8 [L,H,W,3], `codes` int64 [L,R,C] (with a codebook), `actions` int64 [L,N],
    `cells` int64 [L,N,2], `facing` int64 [L,N], `alive` bool [L,N], `rewards` float32 [L,N],
    `present` bool [N], `game` int (index in the sorted catalog names). Clip i is a fixed
    (episode, start) pair: the dataset is deterministic; the sampler shuffles with its seed.
    """

    def __init__(self, path: str | os.PathLike, clip_len: int, split: str,
                 substrates: Sequence[str] | None = None, codebook=None):
        if clip_len < 1:
            raise ValueError(f"clip_len must be >= 1, got {clip_len}")
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
        self.path, self.clip_len, self.split, self.codebook = os.fspath(path), clip_len, split, codebook
        names = sorted(read_meta(self.path)["catalog"])
        if substrates is not None:
            unknown = sorted(set(substrates) - set(names))
            if unknown:
                raise ValueError(f"substrates {unknown} are not in the dataset's catalog")
        headers = [(k, h) for k, h in read_headers(reader(self.path), split, None)
                   if substrates is None or h["substrate"] in substrates]
        self.games = names
        self.keys = [k for k, _ in headers]
        self.headers = [h for _, h in headers]
        starts = [max(0, h["length"] - clip_len + 1) for h in self.headers]  # clips per episode
        self.episode_index = np.repeat(np.arange(len(headers), dtype=np.int64), starts)
        first = np.concatenate([[0], np.cumsum(starts)[:-1]]).astype(np.int64)
        self.start = np.arange(len(self.episode_index), dtype=np.int64) - np.repeat(first, starts)
        sizes = np.array([(h["map_rows"], h["map_cols"]) for h in self.headers],
                         dtype=np.int64).reshape(-1, 2)
        self.sizes = sizes[self.episode_index]   # [clips, 2] map (rows, cols), for bucketing

    def __len__(self) -> int:
        return len(self.episode_index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(f"clip {i} out of range 0..{len(self) - 1}")
        e, s = int(self.episode_index[i]), int(self.start[i])
        key, L = self.keys[e], self.clip_len
        with reader(self.path).begin(buffers=True) as txn:  # opened once per worker
            ep = decode_episode(key, txn.get(key.encode()))
            frames = ep.frames(s, s + L)
            item = {
                "frames": torch.from_numpy(frames),
                "actions": torch.from_numpy(ep.actions[s:s + L].astype(np.int64)),
                "cells": torch.from_numpy(ep.cells[s:s + L].astype(np.int64)),
                "facing": torch.from_numpy(ep.facing[s:s + L].astype(np.int64)),
                "alive": torch.from_numpy(ep.alive[s:s + L].copy()),
                "rewards": torch.from_numpy(ep.rewards[s:s + L].copy()),
            }
        n = self.headers[e]["num_players"]
        item["present"] = torch.ones(n, dtype=torch.bool)
        item["game"] = self.games.index(self.headers[e]["substrate"])
        if self.codebook is not None:
            item["codes"] = torch.from_numpy(np.stack([self.codebook.encode(f) for f in frames]))
        return item


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of clip indices that share one map size (rows, cols).

    Deterministic given `seed` and the epoch (`set_epoch`). With `num_replicas` > 1 (DDP) each rank
    takes every num_replicas-th batch of the same global order, all ranks the same count.
    """

    def __init__(self, dataset: ClipDataset, batch_size: int, seed: int, shuffle: bool = True,
                 drop_last: bool = False, num_replicas: int = 1, rank: int = 0):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} not in 0..{num_replicas - 1}")
        self.batch_size, self.seed, self.shuffle, self.drop_last = batch_size, seed, shuffle, drop_last
        self.num_replicas, self.rank, self.epoch = num_replicas, rank, 0
        buckets = defaultdict(list)
        for i, size in enumerate(map(tuple, dataset.sizes.tolist())):
            buckets[size].append(i)
        self.buckets = {size: np.array(idx, dtype=np.int64) for size, idx in sorted(buckets.items())}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        batches = []
        for idx in self.buckets.values():
            if self.shuffle:
                idx = rng.permutation(idx)
            for lo in range(0, len(idx), self.batch_size):
                batch = idx[lo:lo + self.batch_size]
                if len(batch) == self.batch_size or not self.drop_last:
                    batches.append(batch.tolist())
        if self.shuffle:
            batches = [batches[j] for j in rng.permutation(len(batches))]
        usable = len(batches) - len(batches) % self.num_replicas
        return batches[:usable][self.rank::self.num_replicas]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        return len(self._batches())


PLAYER_FIELDS = ("actions", "cells", "facing", "alive", "rewards")  # player axis is dim 1


def collate_clips(batch: Sequence[dict]) -> dict[str, torch.Tensor]:
    """Stack clips of one map size; pad the player axis to the batch's max with present=False."""
    shapes = {tuple(b["frames"].shape) for b in batch}
    if len(shapes) != 1:
        raise ValueError(f"clips of different frame shapes in one batch: {sorted(shapes)} "
                         "(use BucketBatchSampler)")
    n_max = max(len(b["present"]) for b in batch)
    out = {"frames": torch.stack([b["frames"] for b in batch]),
           "game": torch.tensor([b["game"] for b in batch], dtype=torch.long)}
    if "codes" in batch[0]:
        out["codes"] = torch.stack([b["codes"] for b in batch])
    for name in PLAYER_FIELDS + ("present",):
        dim = 0 if name == "present" else 1
        padded = []
        for b in batch:
            x = b[name]
            pad = list(x.shape)
            pad[dim] = n_max - x.shape[dim]
            padded.append(torch.cat([x, torch.zeros(pad, dtype=x.dtype)], dim=dim))
        out[name] = torch.stack(padded)
    return out
