"""`actionparty dataset split DIR --val K --test K [--workers N]` (or `python -m training.heldout ...`):
record a dataset's held-out val/test episodes with the train plan's steps, policy and base seed and
seeds disjoint from training (training/splits.py says how; training/record.py records them)."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from training.record import record_heldout  # the recorder imports the engine: only when recording

    parser = argparse.ArgumentParser(prog="actionparty dataset split",
                                     description="Record the held-out val/test episodes of a "
                                                 "dataset with seeds disjoint from training.")
    parser.add_argument("dir")
    parser.add_argument("--val", type=int, required=True, help="validation episodes per substrate")
    parser.add_argument("--test", type=int, required=True, help="test episodes per substrate")
    parser.add_argument("--workers", type=int, default=None, help="default: one per core")
    args = parser.parse_args(argv)
    try:
        summaries = record_heldout(args.dir, {"val": args.val, "test": args.test}, args.workers)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0 if all(not s.failed for s in summaries) else 1


if __name__ == "__main__":
    sys.exit(main())
