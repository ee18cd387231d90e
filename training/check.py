"""`actionparty dataset check DIR` (or `python -m training.check DIR`): decode every record and frame of
a dataset (training/store.py); counts per substrate and split, action histograms, bytes per frame,
and every corrupt or missing record by key.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from training.splits import KEY_BASE, SPLITS, episode_key, parse_episode_key
from training.store import META_KEY, SCHEMA_VERSION, CorruptEpisodeError, StoredEpisode, decode_episode, read_meta, reader


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


def main(argv: list[str] | None = None) -> int:
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


if __name__ == "__main__":
    sys.exit(main())
