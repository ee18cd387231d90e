"""Train / validation / test splits: each split is recorded with its own seeds and key indices.

Design: a split is not a relabelling of recorded episodes. Held-out episodes are recorded by their
own command into the same dataset folder, with seeds drawn from a range no other split can reach,
and the split name is stored in every episode header (the reader splits by header). Per split:

    split  episode key index       engine seeds
    train  ep/<substrate>/000000+  [0,         2**28 + 3 * 1000003)
    val    ep/<substrate>/800000+  [2**29,     2**29 + 2**28 + 3 * 1000003)
    test   ep/<substrate>/900000+  [2**30,     2**30 + 2**28 + 3 * 1000003)

An episode's seed is a hash of (base seed, substrate, split, index) inside its split's range, plus
1000003 per retry after a crashed attempt (the header stores the seed actually used), so the ranges
stay disjoint and a resumed run draws the same seeds as an uninterrupted one.

The exact commands (the held-out split reuses the steps, policy and base seed of the train plan
stored in the dataset's meta record, so it can only differ from training in its seeds):

    actionparty record --out data/mp --substrates all --episodes-per-substrate 200 --steps 1000 \\
        --workers 16 --seed 0
    actionparty dataset split data/mp --val 4 --test 4 --workers 16
    actionparty dataset check data/mp

`dataset split` (training/heldout.py) is `record --split val` and `record --split test` for every
substrate of the train plan; rerunning it (or raising --val/--test) resumes and extends like `record`
does.
"""
from __future__ import annotations

import hashlib

SPLITS = ("train", "val", "test")
KEY_BASE = {"train": 0, "val": 800_000, "test": 900_000}
KEY_LIMIT = {"train": 800_000, "val": 100_000, "test": 100_000}  # episodes per substrate
SEED_BASE = {"train": 0, "val": 1 << 29, "test": 1 << 30}
SEED_SPAN = 1 << 28
RETRY_STRIDE = 1_000_003
MAX_ATTEMPTS = 3


def episode_key(substrate: str, index: int) -> str:
    """The LMDB key of an episode (schema v1): ep/<substrate>/<index:06d>."""
    return f"ep/{substrate}/{index:06d}"


def parse_episode_key(key: str) -> tuple[str, int]:
    parts = key.split("/")
    if len(parts) != 3 or parts[0] != "ep" or len(parts[2]) != 6 or not parts[2].isdigit():
        raise ValueError(f"not an episode key: {key!r} (expected ep/<substrate>/<index:06d>)")
    return parts[1], int(parts[2])


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    return split


def key_index(split: str, number: int) -> int:
    """The episode key index of the `number`-th episode (0-based) of a substrate in `split`."""
    check_split(split)
    if not 0 <= number < KEY_LIMIT[split]:
        raise ValueError(f"episode number {number} outside 0..{KEY_LIMIT[split] - 1} for {split}")
    return KEY_BASE[split] + number


def split_of_index(index: int) -> str:
    """The split whose key range holds this episode index."""
    for split in reversed(SPLITS):
        if index >= KEY_BASE[split]:
            return split
    raise ValueError(f"negative episode index {index}")


def episode_seed(base_seed: int, substrate: str, split: str, number: int, attempt: int = 0) -> int:
    """The engine (and policy) seed of one episode attempt; disjoint ranges per split."""
    check_split(split)
    if not 0 <= attempt < MAX_ATTEMPTS:
        raise ValueError(f"attempt must be 0..{MAX_ATTEMPTS - 1}, got {attempt}")
    digest = hashlib.blake2b(f"{base_seed}/{substrate}/{split}/{number}".encode(),
                             digest_size=8).digest()
    return SEED_BASE[split] + int.from_bytes(digest, "little") % SEED_SPAN + RETRY_STRIDE * attempt
