#!/usr/bin/env bash
# Fill .whl/ with the cp312 manylinux x86_64 wheels that the GPU machine (Python 3.12, torch, numpy,
# pandas, matplotlib, tensorboard, pyyaml, absl-py, cloudpickle, ... but no internet) lacks; the
# leases install them with `pip install --no-index --no-deps --target /tmp/site .whl/*.whl`
# (scripts/gpu_lease.sh). Run it here, where pip reaches PyPI:
#
#   bash scripts/gpu_wheels.sh            # VENV_PYTHON=.venv/bin/python PYTHON=python3 DEST=.whl
#
# - Versions: pinned to `$VENV_PYTHON -m pip freeze` (the venv the project is tested with), one each.
# - The list: the run-time import closure of actionparty_env.real, training.record/train, benchmarks.*
#   (pettingzoo, gymnasium, stable_baselines3, lmdb, dmlab2d and the Melting Pot substrate configs of
#   actionparty_env/meltingpot_import.py), checked against every wheel's Requires-Dist, minus what the
#   GPU machine has. attrs is only a declared requirement of dm-tree (never imported) and is carried
#   because the GPU's list does not name it.
# - dm-meltingpot has only an sdist: its wheel is built here with the placeholder assets tarball of
#   scripts/install_meltingpot.sh (seed_meltingpot_assets); its Requires-Dist (tensorflow, chex, ...)
#   stay unmet on purpose, as with install_meltingpot.sh's --no-deps.
# - Checks, then replaces .whl/*.whl: every tag is cp312/abi3/py3 and manylinux x86_64 or any; pip's
#   resolver (--dry-run --target --python-version 3.12 --platform ...) installs the closure from .whl/
#   plus stub wheels of the GPU's packages, and takes nothing else from .whl/ and nothing on the GPU
#   list from it; the total stays under $MAX_MIB MiB (the device tool carries 64 MiB in all).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV_PYTHON=${VENV_PYTHON:-.venv/bin/python}
DEST=${DEST:-.whl}
MAX_MIB=${MAX_MIB:-20}
source scripts/install_meltingpot.sh  # defines seed_meltingpot_assets only

# PLAY=1 adds pygame (the play loop's frame rate, benchmarks.play_speed: 7.3 MiB more; the device carries the
# tree, 58 MiB with the bundled checkpoints, and .whl/ in 64 MiB together, so only for a lease that needs it).
PYGAME=$([ "${PLAY:-0}" = 1 ] && echo pygame || true)
BINARY="dmlab2d lmdb dm-tree wrapt $PYGAME"
PURE="dm-env ml-collections immutabledict attrs gymnasium farama-notifications pettingzoo stable-baselines3"
SDIST="dm-meltingpot"
# What the GPU machine already has (its list, and what torch, tensorboard, matplotlib, pytest need):
# none of it may come from .whl/. The stubs of the resolver check give them these versions.
GPU_HAS="torch==2.11.0 numpy==2.4.6 pandas==2.3.3 matplotlib==3.11.2 einops==0.8.1 safetensors==0.8.0
  tqdm==4.70.1 opencv-python==4.12.0.88 pyyaml==6.0.4 tensorboard==2.21.0 pillow==13.0.0 imageio==2.38.1
  absl-py==2.5.1 cloudpickle==3.1.3 rich==14.2.0 hypothesis==6.140.0 pytest==9.2.0 typing-extensions==4.16.0
  networkx==3.6.1 sympy==1.14.0 filelock==4.3.1 jinja2==3.1.6 fsspec==2026.9.0 protobuf==7.36.2 packaging==26.4
  setuptools==84.2.1"
# Base platforms; a wheel found only for a newer glibc is retried with these added (and reported).
PLATFORMS="manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64"
NEWER="manylinux_2_24_x86_64 manylinux_2_31_x86_64 manylinux_2_34_x86_64 manylinux_2_35_x86_64"
norm() { echo "$1" | tr 'A-Z' 'a-z' | sed 's/[-_.]\{1,\}/-/g'; }
platform_args() { for p in "$@"; do printf -- '--platform %s ' "$p"; done; }

freeze=$("$VENV_PYTHON" -m pip freeze --all 2>/dev/null | grep -E '^[A-Za-z0-9].*==' | while IFS='=' read -r n _ v; do echo "$(norm "$n")==$v"; done)
pin() {  # NAME -> NAME==VERSION from the venv's freeze
  local line; line=$(echo "$freeze" | grep "^$(norm "$1")==" || true)
  [ -n "$line" ] || { echo "gpu_wheels: $1 is not in $VENV_PYTHON's pip freeze" >&2; exit 1; }
  echo "$line"
}

stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/whl" "$stage/stubs"
download() {  # SPEC PLATFORM...
  local spec=$1; shift
  "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    $(platform_args "$@") -d "$stage/whl" "$spec" 2> >(grep -v "is ignored: it is neither" >&2)
}
for name in $BINARY $PURE; do
  spec=$(pin "$name")
  if ! download "$spec" $PLATFORMS 2>/dev/null; then
    download "$spec" $PLATFORMS $NEWER
    echo "gpu_wheels: $spec has no cp312 wheel for glibc <= 2.28; took $(ls "$stage/whl" | grep -i "^$(norm "$name" | tr - _)-")"
  fi
done
# pygame's wheel (PLAY=1) without its docs, examples and tests: 13.3 -> 7.3 MiB.
"$PYTHON" - "$stage/whl" <<'EOF'
import glob, os, sys, zipfile
drop = ("pygame/docs/", "pygame/examples/", "pygame/tests/", "pygame/pygame_icon.icns")
for path in glob.glob(os.path.join(sys.argv[1], "pygame-*.whl")):
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(path + ".slim", "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename.startswith(drop):
                continue
            data = src.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                data = "".join(l for l in data.decode().splitlines(True) if not l.startswith(drop)).encode()
            dst.writestr(info, data)
    os.replace(path + ".slim", path)
EOF
seed_meltingpot_assets "$PYTHON"
"$PYTHON" -m pip wheel -q --no-deps --no-cache-dir --no-binary "$SDIST" "$(pin "$SDIST")" -w "$stage/whl" \
  2> >(grep -v "is ignored: it is neither" >&2)

# Stub wheels (metadata only) of the GPU's packages, for the resolver check.
"$PYTHON" - "$stage/stubs" $GPU_HAS <<'EOF'
import sys, zipfile
for spec in sys.argv[2:]:
    name, version = spec.split("==")
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    with zipfile.ZipFile(f"{sys.argv[1]}/{dist}-{version}-py3-none-any.whl", "w") as z:
        z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: stub\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
EOF

# Check: tags, one version each, nothing from the GPU's list, Requires-Dist.
"$PYTHON" - "$stage/whl" "$MAX_MIB" $GPU_HAS <<'EOF'
import os, sys, zipfile
from pip._vendor.packaging.utils import canonicalize_name, parse_wheel_filename
folder, max_mib, gpu = sys.argv[1], float(sys.argv[2]), {canonicalize_name(s.split("==")[0]) for s in sys.argv[3:]}
names, total, bad = {}, 0, []
for f in sorted(os.listdir(folder)):
    name, version, _, tags = parse_wheel_filename(f)
    ok = [t for t in tags if t.interpreter in ("cp312", "py3", "py312") and t.abi in ("cp312", "abi3", "none")
          and (t.platform == "any" or (t.platform.startswith("manylinux") and t.platform.endswith("_x86_64")))]
    if not ok: bad.append(f"{f}: no cp312/py3 manylinux x86_64 tag")
    if name in names: bad.append(f"{f}: a second version of {name}")
    if name in gpu: bad.append(f"{f}: the GPU machine has {name}")
    names[name] = version
    size = os.path.getsize(f"{folder}/{f}"); total += size
    with zipfile.ZipFile(f"{folder}/{f}") as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        reqs = [l.split(":", 1)[1].strip() for l in z.read(meta).decode().splitlines()
                if l.startswith("Requires-Dist:") and "extra ==" not in l]
    print(f"{size / 2**20:6.2f} MiB  {f}\n           Requires-Dist (no extras): {' | '.join(reqs) or '-'}")
print(f"{total / 2**20:6.2f} MiB  total, {len(names)} wheels")
if total > max_mib * 2**20: bad.append(f"total {total / 2**20:.2f} MiB over {max_mib} MiB")
if bad: sys.exit("gpu_wheels: " + "\n  ".join(bad))
EOF

resolve() {  # ARGS...: pip's resolver on Python 3.12 / manylinux x86_64, from the staged wheels and stubs
  rm -rf "$stage/target" "$stage/report.json"
  "$PYTHON" -m pip install -q --dry-run --no-index --find-links "$stage/whl" --find-links "$stage/stubs" \
    --ignore-installed --target "$stage/target" --python-version 3.12 --implementation cp --only-binary=:all: \
    $(platform_args $PLATFORMS $NEWER) --report "$stage/report.json" "$@"
  "$PYTHON" -c 'import json, sys; print(" ".join("%s==%s" % (i["metadata"]["name"], i["metadata"]["version"]) for i in json.load(open(sys.argv[1]))["install"]))' "$stage/report.json"
}
echo "resolver, with dependencies (dm-meltingpot's substrate needs = setup.cfg's meltingpot extra):"
with_deps=$(resolve dmlab2d dm-env ml-collections immutabledict dm-tree absl-py lmdb pettingzoo gymnasium stable-baselines3 $PYGAME)
echo "  $with_deps"
echo "resolver, dm-meltingpot --no-deps (as install_meltingpot.sh and gpu_lease.sh install it):"
echo "  $(resolve --no-deps "$SDIST")"
"$PYTHON" - "$stage/whl" "$with_deps" "$SDIST" $GPU_HAS <<'EOF'
import os, sys
from pip._vendor.packaging.utils import canonicalize_name, parse_wheel_filename
carried = {parse_wheel_filename(f)[0] for f in os.listdir(sys.argv[1])}
resolved = {canonicalize_name(s.split("==")[0]) for s in sys.argv[2].split()}
gpu = {canonicalize_name(s.split("==")[0]) for s in sys.argv[4:]}
unused = carried - resolved - {canonicalize_name(sys.argv[3])}
print(f"  from .whl: {len(resolved & carried)}, from the GPU (stubs): {' '.join(sorted(resolved & gpu))}")
if unused: sys.exit(f"gpu_wheels: carried but not needed: {sorted(unused)}")
EOF

mkdir -p "$DEST"; rm -f "$DEST"/*.whl; cp "$stage/whl"/*.whl "$DEST"/
exclude=$(git rev-parse --git-path info/exclude); mkdir -p "$(dirname "$exclude")"
grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
echo "gpu_wheels: $(ls "$DEST"/*.whl | wc -l) wheels, $(du -ch "$DEST"/*.whl | tail -1 | cut -f1) in $DEST/"
