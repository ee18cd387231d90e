"""The LMDB episode store (schema v1): write, read, check, and a torch dataset of clips.

Schema v1 (docs/ARCHITECTURE.md): one LMDB environment per folder.
- `b"meta"` -> JSON {schema_version: 1, catalog: {name: GameSpec fields}, plan: {split: {substrate:
  {episodes, steps, seed, policy}}}, failed: {split: {substrate: reason}}}. `plan` and `failed` are
  written by the recorder (so `check` can name missing episodes); the reader needs only the catalog.
- `b"ep/<substrate>/<index:06d>"` -> an `.npz` (np.savez, uncompressed members, no pickles):
  `header` (JSON as uint8: substrate, roles, seed, policy, num_players, map_rows, map_cols, length
  T, split, ...), `frame_blob` uint8 + `frame_offsets` int64 [T+2] (T+1 zlib frames; frame 0 is
  the reset frame), `actions` int16 [T,N], `cells` int16 [T+1,N,2] (row, col), `facing` int8
  [T+1,N], `alive` bool [T+1,N], `rewards` float32 [T,N]. Step t takes state t and action t to
  state t+1; `rewards[t]` is received on that transition.

Each episode is one `put` in its own transaction, so a killed writer never leaves half an episode.
Readers parse the npz in place (zero copy over LMDB's memory map) and decompress only the frames
they need. A damaged record raises `CorruptEpisodeError` naming its key.

`ClipDataset` yields clips of `clip_len` consecutive frames: frames t..t+L-1 with the actions taken
at them (the last action leads out of the clip), the states at them and the rewards of those
actions, so a clip may start at t = 0..T-L. `BucketBatchSampler` batches clips of one map size;
`collate_clips` pads the player axis. `actionparty dataset check DIR` (or `python -m
training.dataset check DIR`) validates a whole dataset.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import struct
import sys
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import lmdb
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler
from tqdm import tqdm

from training.splits import KEY_BASE, SPLITS, episode_key, parse_episode_key, split_of_index

SCHEMA_VERSION = 1
MAP_SIZE = 64 << 30          # LMDB reserves address space only; the file grows as data comes
SPRITE = 8                   # pixels per map cell
META_KEY = b"meta"
EP_PREFIX = "ep/"
HEADER_FIELDS = ("substrate", "roles", "seed", "policy", "num_players", "map_rows", "map_cols",
                 "length", "split")
# name -> (dtype, shape in terms of T and N); frame_offsets is [T+2]
ARRAYS = {
    "actions": (np.int16, lambda t, n: (t, n)),
    "cells": (np.int16, lambda t, n: (t + 1, n, 2)),
    "facing": (np.int8, lambda t, n: (t + 1, n)),
    "alive": (np.bool_, lambda t, n: (t + 1, n)),
    "rewards": (np.float32, lambda t, n: (t, n)),
}


class CorruptEpisodeError(ValueError):
    """A record that cannot be decoded or does not match its header; names the key."""

    def __init__(self, key: str, reason: str):
        super().__init__(f"episode {key}: {reason}")
        self.key, self.reason = key, reason


# ----------------------------------------------------------------------------- frames

def pack_frames(compressed: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """(frame_blob uint8, frame_offsets int64 [len+1]) from per-frame zlib streams."""
    offsets = np.zeros(len(compressed) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(c) for c in compressed])
    return np.frombuffer(b"".join(compressed), dtype=np.uint8), offsets


# ----------------------------------------------------------------------------- episodes

@dataclass
class StoredEpisode:
    """One episode in its stored form (frames still compressed). From `decode_episode` the arrays
    may be read-only views into LMDB's memory: use them inside the read transaction only."""
    header: dict
    frame_blob: np.ndarray
    frame_offsets: np.ndarray
    actions: np.ndarray
    cells: np.ndarray
    facing: np.ndarray
    alive: np.ndarray
    rewards: np.ndarray
    key: str = ""

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return self.header["map_rows"] * SPRITE, self.header["map_cols"] * SPRITE, 3

    def frames(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Decoded frames [start, stop) as uint8 [L,H,W,3]."""
        stop = len(self.frame_offsets) - 1 if stop is None else stop
        shape = self.frame_shape
        out = np.empty((stop - start,) + shape, dtype=np.uint8)
        for i, t in enumerate(range(start, stop)):
            lo, hi = int(self.frame_offsets[t]), int(self.frame_offsets[t + 1])
            try:
                raw = zlib.decompress(self.frame_blob[lo:hi])
            except zlib.error as e:
                raise CorruptEpisodeError(self.key, f"frame {t}: zlib error: {e}") from None
            if len(raw) != out[i].nbytes:
                raise CorruptEpisodeError(self.key, f"frame {t}: {len(raw)} bytes, expected "
                                                    f"{out[i].nbytes} for {shape}")
            out[i] = np.frombuffer(raw, dtype=np.uint8).reshape(shape)
        return out

    def encode(self) -> bytes:
        """The npz bytes stored under the episode key; ValueError if arrays and header disagree."""
        _check_consistent(self)
        buf = io.BytesIO()
        np.savez(buf, header=np.frombuffer(json.dumps(self.header).encode(), dtype=np.uint8),
                 frame_blob=self.frame_blob, frame_offsets=self.frame_offsets,
                 **{name: getattr(self, name) for name in ARRAYS})
        return buf.getvalue()


@dataclass
class Episode:
    """A whole decoded episode (`read_episode`)."""
    key: str
    header: dict
    frames: np.ndarray    # uint8 [T+1,H,W,3]
    actions: np.ndarray   # int16 [T,N]
    cells: np.ndarray     # int16 [T+1,N,2]
    facing: np.ndarray    # int8 [T+1,N]
    alive: np.ndarray     # bool [T+1,N]
    rewards: np.ndarray   # float32 [T,N]

    def __getitem__(self, name: str):
        return getattr(self, name)  # episode["frames"] reads like episode.frames


def _check_consistent(ep: StoredEpisode) -> None:
    """Raise ValueError naming the first disagreement between arrays, header and key."""
    h = ep.header
    missing = [f for f in HEADER_FIELDS if f not in h]
    if missing:
        raise ValueError(f"header lacks {missing}")
    t, n = h["length"], h["num_players"]
    counts = {"length": (t, 0), "num_players": (n, 1), "map_rows": (h["map_rows"], 1),
              "map_cols": (h["map_cols"], 1)}
    bad = {k: v for k, (v, least) in counts.items() if not (isinstance(v, int) and v >= least)}
    if bad:
        raise ValueError(f"header counts are not valid: {bad}")
    if h["split"] not in SPLITS:
        raise ValueError(f"header split {h['split']!r} is not one of {SPLITS}")
    if ep.key:
        substrate, index = parse_episode_key(ep.key)
        if h["substrate"] != substrate:
            raise ValueError(f"header substrate {h['substrate']!r} != key substrate {substrate!r}")
        if split_of_index(index) != h["split"]:
            raise ValueError(f"header split {h['split']!r} but the key index is in the "
                             f"{split_of_index(index)!r} range")
    for name, (dtype, shape) in ARRAYS.items():
        a = getattr(ep, name)
        if a.dtype != dtype or a.shape != shape(t, n):
            raise ValueError(f"{name} is {a.dtype} {a.shape}, header says {np.dtype(dtype)} "
                             f"{shape(t, n)}")
    off = ep.frame_offsets
    if off.dtype != np.int64 or off.shape != (t + 2,):
        raise ValueError(f"frame_offsets is {off.dtype} {off.shape}, expected int64 ({t + 2},)")
    if ep.frame_blob.dtype != np.uint8 or ep.frame_blob.ndim != 1:
        raise ValueError(f"frame_blob is {ep.frame_blob.dtype} {ep.frame_blob.shape}, expected "
                         "uint8 [bytes]")
    if off[0] != 0 or np.any(np.diff(off) <= 0) or off[-1] != ep.frame_blob.size:
        raise ValueError(f"frame_offsets do not partition the {ep.frame_blob.size}-byte blob")


class _BufferFile(io.RawIOBase):
    """A seekable read-only file over a memoryview, so zipfile can parse it without a copy."""

    def __init__(self, view: memoryview):
        self._view, self._pos = view, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = max(0, (0, self._pos, len(self._view))[whence] + offset)
        return self._pos

    def readinto(self, b) -> int:
        n = max(0, min(len(b), len(self._view) - self._pos))
        b[:n] = self._view[self._pos:self._pos + n]
        self._pos += n
        return n


def _npz_arrays(view: memoryview, verify_crc: Sequence[str]) -> dict[str, np.ndarray]:
    """Every member of an uncompressed npz as a zero-copy array; CRC-check the named members."""
    arrays = {}
    with zipfile.ZipFile(_BufferFile(view)) as zf:
        for info in zf.infolist():
            name = info.filename.removesuffix(".npy")
            if info.compress_type != zipfile.ZIP_STORED:
                raise ValueError(f"member {name} is compressed (expected np.savez's stored)")
            local = bytes(view[info.header_offset:info.header_offset + 30])
            if len(local) != 30 or local[:4] != b"PK\x03\x04":
                raise ValueError(f"member {name}: bad local zip header")
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            start = info.header_offset + 30 + name_len + extra_len
            member = view[start:start + info.file_size]
            if len(member) != info.file_size:
                raise ValueError(f"member {name} is truncated")
            if name in verify_crc and zlib.crc32(member) != info.CRC:
                raise ValueError(f"member {name}: CRC mismatch")
            fp = _BufferFile(member)
            version = np.lib.format.read_magic(fp)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f"member {name}: unsupported .npy version {version}")
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(fp)
            if dtype.hasobject:
                raise ValueError(f"member {name} holds Python objects")
            count = int(np.prod(shape))
            data = member[fp.tell():fp.tell() + count * dtype.itemsize]
            if len(data) != count * dtype.itemsize:
                raise ValueError(f"member {name} is truncated")
            arrays[name] = np.frombuffer(data, dtype=dtype).reshape(
                shape, order="F" if fortran else "C")
    return arrays


def decode_episode(key: str, buf, verify_frame_crc: bool = False) -> StoredEpisode:
    """Parse a stored record (bytes or LMDB buffer) in place; CorruptEpisodeError on any fault.
    The small arrays are always CRC-checked; the frame blob only if asked (its zlib streams carry
    their own checksum, checked as frames are decoded)."""
    if buf is None:
        raise CorruptEpisodeError(key, "missing (no record under this key)")
    crc = list(ARRAYS) + ["header", "frame_offsets"] + (["frame_blob"] if verify_frame_crc else [])
    try:
        arrays = _npz_arrays(memoryview(buf), crc)
        missing = [n for n in ("header", "frame_blob", "frame_offsets", *ARRAYS) if n not in arrays]
        if missing:
            raise ValueError(f"npz lacks {missing}")
        header = json.loads(arrays.pop("header").tobytes())
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
        ep = StoredEpisode(header=header, key=key, **{n: arrays[n] for n in
                                                      ("frame_blob", "frame_offsets", *ARRAYS)})
        _check_consistent(ep)
    except (ValueError, zipfile.BadZipFile, EOFError, OSError, json.JSONDecodeError) as e:
        raise CorruptEpisodeError(key, f"bad record: {e}") from None
    return ep


# ----------------------------------------------------------------------------- the LMDB folder

_READERS: dict[str, tuple[int, lmdb.Environment]] = {}


def reader(path: str | os.PathLike) -> lmdb.Environment:
    """This process's shared read-only env of a dataset folder (readonly, no locks).

    py-lmdb refuses to open one environment twice in a process, and a forked DataLoader worker
    inherits the parent's open envs: so one env per folder and process, and a worker closes the
    copy it inherited (harmless without locks) and opens its own."""
    real = os.path.realpath(path)
    pid, env = _READERS.get(real, (None, None))
    if env is not None and pid == os.getpid():
        return env
    if env is not None:
        env.close()
        del _READERS[real]
    if not os.path.exists(os.path.join(real, "data.mdb")):
        raise ValueError(f"{path} is not a dataset folder (no data.mdb)")
    env = lmdb.open(real, readonly=True, lock=False, readahead=False, subdir=True)
    _READERS[real] = (os.getpid(), env)
    return env


def open_writer(path: str | os.PathLike) -> lmdb.Environment:
    """A writable env (folder created if needed); closes this process's reader of it first."""
    real = os.path.realpath(path)
    pid, env = _READERS.pop(real, (None, None))
    if env is not None:
        env.close()
    os.makedirs(real, exist_ok=True)
    return lmdb.open(real, map_size=MAP_SIZE, subdir=True, readahead=False)


def read_meta(path_or_env) -> dict:
    env = path_or_env if isinstance(path_or_env, lmdb.Environment) else reader(path_or_env)
    with env.begin() as txn:
        raw = txn.get(META_KEY)
    if raw is None:
        raise ValueError(f"dataset {env.path()} has no meta record")
    meta = json.loads(raw)
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"dataset {env.path()} has schema version {meta.get('schema_version')}, "
                         f"this reader knows {SCHEMA_VERSION}")
    return meta


def write_meta(env: lmdb.Environment, meta: dict) -> None:
    with env.begin(write=True) as txn:
        txn.put(META_KEY, json.dumps(meta, sort_keys=True).encode())


def write_episode(env: lmdb.Environment, episode: StoredEpisode) -> bool:
    """Store one episode in one transaction; False (and nothing written) if the key exists."""
    data = episode.encode()
    with env.begin(write=True) as txn:
        return txn.put(episode.key.encode(), data, overwrite=False)


def episode_keys(env: lmdb.Environment) -> list[str]:
    with env.begin() as txn:
        return [k.decode() for k in txn.cursor().iternext(values=False)
                if k.startswith(EP_PREFIX.encode())]


def _headers(env: lmdb.Environment, split: str | None, substrate: str | None
             ) -> list[tuple[str, dict]]:
    """(key, header) of the matching episodes, sorted by key; reads only the headers."""
    out = []
    prefix = (EP_PREFIX + (f"{substrate}/" if substrate else "")).encode()
    with env.begin(buffers=True) as txn:
        cur = txn.cursor()
        if not cur.set_range(prefix):
            return out
        for k, v in cur:
            k = bytes(k)
            if not k.startswith(prefix):
                break
            key = k.decode()
            header = decode_episode(key, v).header
            if split is None or header["split"] == split:
                out.append((key, header))
    return out


def list_episodes(path: str | os.PathLike, split: str | None = None,
                  substrate: str | None = None) -> list[str]:
    """Episode keys, sorted, optionally of one split (by header) and/or one substrate."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    return [k for k, _ in _headers(reader(path), split, substrate)]


def read_episode(path: str | os.PathLike, key: str) -> Episode:
    """One whole episode, every frame decoded."""
    with reader(path).begin(buffers=True) as txn:
        ep = decode_episode(key, txn.get(key.encode()))
        return Episode(key, ep.header, ep.frames(), **{n: np.array(getattr(ep, n)) for n in ARRAYS})


# ----------------------------------------------------------------------------- torch reader

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
        headers = [(k, h) for k, h in _headers(reader(self.path), split, None)
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


# ----------------------------------------------------------------------------- check

@dataclass
class CheckReport:
    schema_version: int | None = None
    counts: dict = field(default_factory=dict)            # (substrate, split) -> episodes
    frames: dict = field(default_factory=dict)            # substrate -> frames
    frame_bytes: dict = field(default_factory=dict)       # substrate -> compressed frame bytes
    histograms: dict = field(default_factory=dict)        # substrate -> int64 [num actions]
    problems: list = field(default_factory=list)          # one line each, naming the key
    failed: dict = field(default_factory=dict)            # split -> {substrate: reason}


def _check_record(key: str, value, catalog: dict) -> StoredEpisode:
    """Fully decode one record (CRCs, every frame, action range); CorruptEpisodeError if bad."""
    try:
        parse_episode_key(key)
    except ValueError as e:
        raise CorruptEpisodeError(key, str(e)) from None
    ep = decode_episode(key, value, verify_frame_crc=True)
    spec = catalog.get(ep.header["substrate"])
    if spec is None:
        raise CorruptEpisodeError(key, f"substrate {ep.header['substrate']!r} is not in the meta "
                                       "catalog")
    num_actions = len(spec["action_names"])
    if ep.actions.size and not 0 <= ep.actions.min() <= ep.actions.max() < num_actions:
        raise CorruptEpisodeError(key, f"actions outside 0..{num_actions - 1}")
    ep.frames()  # every frame decodes to the header's map size
    return ep


def check_dataset(path: str | os.PathLike, progress: bool = True) -> CheckReport:
    """Decode every record and frame; collect counts, histograms and every problem by key."""
    report = CheckReport()
    env = reader(path)
    try:
        meta = read_meta(env)
    except ValueError as e:
        report.problems.append(f"meta: {e}")
        meta = {}
    report.schema_version = meta.get("schema_version")
    catalog, report.failed = meta.get("catalog", {}), meta.get("failed", {})
    present = set()
    with env.begin(buffers=True) as txn:
        for k, v in tqdm(txn.cursor(), total=env.stat()["entries"], desc="check",
                         disable=not progress):
            key = bytes(k).decode(errors="replace")
            if key == META_KEY.decode():
                continue
            present.add(key)
            try:
                ep = _check_record(key, v, catalog)
            except CorruptEpisodeError as e:
                report.problems.append(str(e))
                continue
            sub, split = ep.header["substrate"], ep.header["split"]
            report.counts[(sub, split)] = report.counts.get((sub, split), 0) + 1
            report.frames[sub] = report.frames.get(sub, 0) + ep.header["length"] + 1
            report.frame_bytes[sub] = report.frame_bytes.get(sub, 0) + ep.frame_blob.size
            hist = report.histograms.setdefault(sub, np.zeros(len(catalog[sub]["action_names"]),
                                                              dtype=np.int64))
            hist += np.bincount(ep.actions.ravel().astype(np.int64), minlength=hist.size)
    for split, plan in meta.get("plan", {}).items():
        for sub, p in plan.items():
            if sub in report.failed.get(split, {}):
                continue
            for j in range(p["episodes"]):
                key = episode_key(sub, KEY_BASE[split] + j)
                if key not in present:
                    report.problems.append(f"episode {key}: missing (planned by the recorder)")
    return report


def format_report(report: CheckReport, catalog: dict) -> str:
    lines = [f"schema version: {report.schema_version}"]
    subs = sorted({s for s, _ in report.counts})
    lines.append(f"{'substrate':<58} " + " ".join(f"{s:>6}" for s in SPLITS) + "  frames  B/frame")
    for sub in subs:
        counts = " ".join(f"{report.counts.get((sub, s), 0):>6}" for s in SPLITS)
        lines.append(f"{sub:<58} {counts} {report.frames[sub]:>7} "
                     f"{report.frame_bytes[sub] / report.frames[sub]:>8.0f}")
    total_frames = sum(report.frames.values())
    if total_frames:
        lines.append(f"total: {sum(report.counts.values())} episodes, {total_frames} frames, "
                     f"{sum(report.frame_bytes.values()) / total_frames:.0f} B/frame")
    lines.append("action histograms (share of player-steps):")
    for sub in subs:
        hist = report.histograms[sub]
        names = catalog.get(sub, {}).get("action_names", range(hist.size))
        share = hist / max(1, hist.sum())
        lines.append(f"  {sub}: " + ", ".join(f"{n} {p:.3f}" for n, p in zip(names, share)))
    for split, subs_failed in report.failed.items():
        for sub, reason in subs_failed.items():
            lines.append(f"failed while recording ({split}): {sub}: {reason}")
    lines.extend(f"PROBLEM {p}" for p in report.problems)
    lines.append(f"{len(report.problems)} problem(s)")
    return "\n".join(lines)


def check_main(argv: list[str] | None = None) -> int:
    """`actionparty dataset check DIR`: exit 1 if any record is corrupt or missing."""
    parser = argparse.ArgumentParser(prog="actionparty dataset check",
                                     description="Validate every record of a dataset; counts per "
                                                 "substrate and split, action histograms, bytes per "
                                                 "frame, and every corrupt or missing record by key.")
    parser.add_argument("dir")
    args = parser.parse_args(argv)
    try:
        report = check_dataset(args.dir)
    except ValueError as e:  # not a dataset folder
        print(f"error: {e}", file=sys.stderr)
        return 2
    catalog = read_meta(args.dir)["catalog"] if report.schema_version == SCHEMA_VERSION else {}
    print(format_report(report, catalog))
    return 1 if report.problems else 0


if __name__ == "__main__":  # python -m training.dataset {check,split} ... == actionparty dataset ...
    from actionparty_env.cli import main

    sys.exit(main(["dataset", *sys.argv[1:]]))
