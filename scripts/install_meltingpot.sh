#!/usr/bin/env bash
# Install Melting Pot (dm-meltingpot 2.4.1) without TensorFlow and without its assets download.
#
#   PYTHON=.venv/bin/python bash scripts/install_meltingpot.sh
#
# Why it is not a plain `pip install dm-meltingpot`:
# - Its metadata requires tensorflow, pandas, pygame-ce and opencv-python, which only its bots and
#   human-play tools use; substrates need none of them. So it is installed with --no-deps, and the
#   packages substrates do import come from this project's `meltingpot` extra (setup.cfg).
# - PyPI has only its sdist, whose setup.py downloads `meltingpot-assets-2.3.0.tar.gz` (the bots'
#   saved models, which substrates do not need) from a host this machine cannot reach, unless a
#   file of that name already lies in Python's temp dir. We pre-seed one holding only an
#   `assets/.keep` placeholder (the build unpacks `assets/` from it; an empty tarball fails).
#
# scripts/gpu_wheels.sh sources this file for `seed_meltingpot_assets` (its dm-meltingpot wheel is
# built from the same sdist); sourcing only defines the function.

seed_meltingpot_assets() {  # PYTHON: put the placeholder tarball into that Python's temp dir
  local tmp tarball work
  tmp=$("$1" -c 'import tempfile; print(tempfile.gettempdir())')
  tarball="$tmp/meltingpot-assets-2.3.0.tar.gz"
  if [ ! -f "$tarball" ]; then
    work=$(mktemp -d)
    mkdir -p "$work/assets"
    touch "$work/assets/.keep"
    tar -czf "$tarball" -C "$work" assets
    rm -rf "$work"
    echo "seed_meltingpot_assets: pre-seeded a placeholder $tarball"
  fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  PYTHON=${PYTHON:-python3}
  seed_meltingpot_assets "$PYTHON"
  "$PYTHON" -m pip install --no-deps --no-binary dm-meltingpot "dm-meltingpot==2.4.1"
fi
