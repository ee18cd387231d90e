"""Shared test set-up.

- matplotlib draws off-screen (render_mode="human" is exercised without a display: the env's Window
  accepts an explicitly chosen backend, see actionparty_env/render.py).
- The repository root is importable without installing (tests also run from a plain checkout).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
