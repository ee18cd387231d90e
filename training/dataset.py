"""The dataset's public names in one import, for callers written before the split by job:

- training/store.py: the LMDB episode store (schema v1; write, read, list; `Episode`, `StoredEpisode`);
- training/clips.py: the torch `ClipDataset`, `BucketBatchSampler` and `collate_clips`;
- training/check.py: `check_dataset` and `actionparty dataset check`.

New code imports the module of its job (training/train.py, tables.py and record.py still import this
one). The modules it re-exports never import it back (tests/test_imports.py fails on any circle).
"""
from __future__ import annotations

from training.check import CheckReport, check_dataset, format_report
from training.clips import PLAYER_FIELDS, BucketBatchSampler, ClipDataset, collate_clips
from training.store import (ARRAYS, EP_PREFIX, HEADER_FIELDS, MAP_SIZE, META_KEY, SCHEMA_VERSION, CorruptEpisodeError,
                            Episode, StoredEpisode, decode_episode, list_episodes, open_writer, pack_frames,
                            read_episode, read_headers, read_meta, reader, write_meta)

__all__ = ["ARRAYS", "EP_PREFIX", "HEADER_FIELDS", "MAP_SIZE", "META_KEY", "PLAYER_FIELDS", "SCHEMA_VERSION",
           "BucketBatchSampler", "CheckReport", "ClipDataset", "CorruptEpisodeError", "Episode", "StoredEpisode",
           "check_dataset", "collate_clips", "decode_episode", "format_report", "list_episodes", "open_writer",
           "pack_frames", "read_episode", "read_headers", "read_meta", "reader", "write_meta"]
