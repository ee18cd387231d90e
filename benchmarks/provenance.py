"""Where a figure comes from: the machine and the commit, written beside every result."""
from __future__ import annotations

import gzip
import json
import os
import platform
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def git_commit() -> str:
    """ACTIONPARTY_COMMIT where set (the GPU machine gets a copy of the working tree, whose git
    history, if any, is not this commit's: scripts/gpu_*.sh pass it), else the checkout's short commit."""
    if os.environ.get("ACTIONPARTY_COMMIT"):
        return os.environ["ACTIONPARTY_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        out = ""
    return out or "unknown"


def machine() -> dict:
    """CPU model, cores, Python, platform, date, commit and the load (other jobs on a shared machine)."""
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "git_commit": git_commit(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "load_average_1min": round(os.getloadavg()[0], 2)}


def save_results(stem: Path, result: dict, markdown: str) -> None:
    """Write a benchmark's `stem`.json (the result) and `stem`.md (its table), and print the table."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1))
    stem.with_suffix(".md").write_text(markdown)
    print(markdown)


def load_results(path: Path) -> dict:
    """A benchmark's saved result, `stem.json` or gzipped as `stem.json.gz` (how benchmarks/results keeps it)."""
    path = Path(path)
    data = path.read_bytes()
    return json.loads(gzip.decompress(data) if path.suffix == ".gz" else data)


def results_stem(path: Path) -> str:
    """The stem of a results file: `dynamics_h200.json.gz` -> `dynamics_h200`."""
    return Path(path).name.split(".json")[0]
