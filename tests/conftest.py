"""Shared test set-up, helpers and fixtures.

- matplotlib draws off-screen (render_mode="human" is exercised without a display: the env's Window
  accepts an explicitly chosen backend, see actionparty_env/render.py).
- The repository root is importable without installing (tests also run from a plain checkout).
- Expensive things are made once per session and shared by every pytest-xdist worker (a lock in the
  session's shared folder): `tiny_dataset` (real episodes recorded for the trainer's tests) and
  `dream_checkpoint` (a tiny random world model with real start states, a sprite table and a view table).
  `cached_result` keeps a measurement in pytest's cache folder across sessions, keyed by the files and
  versions it depends on.
- Tests that run long (the real engine on every substrate, training runs, the view tables) are marked
  `slow` (pyproject.toml): `python -m pytest -q -m "not slow" tests` is the fast tier.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# ---------------------------------------------------------------------------------------------- helpers
def subprocess_env() -> dict[str, str]:
    """The environment of a test's subprocess: one thread (deterministic and fast on a shared 2-core
    machine), the repository importable from anywhere, output unbuffered."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def shared_tmp(tmp_path_factory) -> Path:
    """A folder shared by every pytest-xdist worker of this session (the session's own folder otherwise)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextmanager
def locked(path: Path):
    """An exclusive lock on `path` (a lock file), so one process makes what the others then read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def once_per_session(tmp_path_factory, name: str, make: Callable[[Path], None]) -> Path:
    """The folder `name` in the session's shared folder, made by `make(folder)` in the first worker that
    asks (the others wait for it)."""
    root = shared_tmp(tmp_path_factory)
    folder = root / name
    with locked(root / f"{name}.lock"):
        if not (folder / ".complete").exists():
            folder.mkdir(parents=True, exist_ok=True)
            make(folder)
            (folder / ".complete").touch()
    return folder


def cached_result(config, name: str, depends_on: Iterable[str | Path], compute: Callable[[], dict]) -> dict:
    """`compute()` (a JSON-able dict), kept in pytest's cache folder under a key made of the contents of
    `depends_on` (files, relative to the repository root, or any text such as a version) and recomputed
    when any of them changes; one process computes it while xdist workers that ask wait."""
    digest = hashlib.sha256()
    for item in depends_on:
        path = ROOT / item if not isinstance(item, Path) else item
        digest.update(str(item).encode() + b"\0" + (path.read_bytes() if path.is_file() else b"") + b"\0")
    key = digest.hexdigest()[:20]
    cache = getattr(config, "cache", None)
    if cache is None:  # -p no:cacheprovider
        return compute()
    folder = Path(cache.mkdir(name))
    path = folder / f"{key}.json"
    with locked(folder / "lock"):
        if path.is_file():
            return json.loads(path.read_text())
        result = compute()
        for old in folder.glob("*.json"):
            old.unlink()
        path.write_text(json.dumps(result))
        return result


def package_version(name: str) -> str:
    try:
        return f"{name}=={metadata.version(name)}"
    except metadata.PackageNotFoundError:
        return f"{name} absent"


# ----------------------------------------------------------------------------- a tiny random model
TINY_VOCAB = 12  # codes of tiny_model's codebook (V in the model tests)


def tiny_model(seed: int = 0, games: tuple[str, str] = ("game_a", "game_b"), action_vocab: list[str] | None = None,
               **switches):
    """A tiny random WorldModel of two games (`games`), 8 action names (`action_vocab`; default A0..A7) and
    TINY_VOCAB patches; `switches`: the ModelConfig options of the method (spatial_rope, subject_isolation,
    frame_occupancy)."""
    import numpy as np
    import torch

    from actionparty_env.grid import CELL
    from actionparty_env.model.network import ModelConfig, WorldModel

    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=TINY_VOCAB, num_games=2, num_action_names=8, max_players=4, dim=32, depth=2, heads=2,
                      window=2, pointer_dim=8, max_actions=8, **switches)
    model = WorldModel(cfg, list(games), action_vocab or [f"A{i}" for i in range(8)])
    rng = np.random.default_rng(seed)
    patches = rng.permutation(TINY_VOCAB * 4)[:TINY_VOCAB, None, None, None] * np.ones((1, CELL, CELL, 3), np.int64)
    model.patches.copy_(torch.from_numpy((patches % 256).astype(np.uint8)))
    model.action_ids.copy_(torch.arange(8).repeat(2, 1))
    return model.eval()


# ------------------------------------------------------------------------------- the recorded dataset
TINY_SUBSTRATES = "coins,collaborative_cooking__asymmetric"  # two map sizes, 2 players each, fast to record


def _record_tiny_dataset(path: Path) -> None:
    for split, episodes in (("train", 3), ("val", 1), ("test", 1)):
        subprocess.run([sys.executable, "-m", "training.record", "--out", str(path), "--substrates",
                        TINY_SUBSTRATES, "--episodes-per-substrate", str(episodes), "--steps", "30",
                        "--workers", "2", "--seed", "0", "--split", split],
                       cwd=ROOT, env=subprocess_env(), check=True, capture_output=True)


def tiny_dataset_path(tmp_path_factory) -> Path:
    """2 substrates x 3 episodes x 30 steps for training, 1 episode each for val and test, recorded from
    the real Melting Pot once per session (the `tiny_dataset` fixture)."""
    return once_per_session(tmp_path_factory, "tiny_training_data", _record_tiny_dataset)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    return tiny_dataset_path(tmp_path_factory)


# ------------------------------------------------------------------------- a tiny dream checkpoint
DREAM_SUBSTRATE = "coins"
DREAM_START_SEEDS = (11, 12, 13)
REAL_VIEWS_FILE = "real_views.npz"  # beside the checkpoint: the real engine's views at each start state


def store_real_episode(env, substrate: str, number: int, seed: int, steps: list) -> None:
    """Put an engine's reset and steps (`EngineStep`s, the first the reset; built with `seed`) into the
    LMDB `env` as the `number`-th training episode of `substrate`, in the recorder's format (training/store.py)."""
    import zlib

    import numpy as np

    from actionparty_env.grid import CELL
    from training.splits import episode_key, key_index
    from training.store import StoredEpisode, pack_frames

    t, n = len(steps) - 1, len(steps[0].cells)
    rows, cols = (d // CELL for d in steps[0].frame.shape[:2])
    header = dict(substrate=substrate, roles=["default"] * n, seed=seed, policy={"name": "random"},
                  num_players=n, map_rows=rows, map_cols=cols, length=t, split="train")
    blob, offsets = pack_frames([zlib.compress(s.frame.tobytes(), 1) for s in steps])
    episode = StoredEpisode(header, blob, offsets, key=episode_key(substrate, key_index("train", number)),
                            actions=np.zeros((t, n), np.int16),  # not read by the artefact builders
                            cells=np.stack([s.cells for s in steps]).astype(np.int16),
                            facing=np.stack([s.facing for s in steps]).astype(np.int8),
                            alive=np.stack([s.alive for s in steps]),
                            rewards=np.stack([s.rewards for s in steps[1:]]).astype(np.float32).reshape(t, n))
    with env.begin(write=True) as txn:
        txn.put(episode.key.encode(), episode.encode())


def make_checkpoint(folder: Path, substrate: str = DREAM_SUBSTRATE) -> dict:
    """A tiny random WorldModel for `substrate` whose codebook holds the real game's patches, with
    start states from real resets, a sprite table and a view table from real steps, each built as the
    bundle builds it (training/artefacts.py). Returns the real reset views {start seed: uint8 [N, Vh,
    Vw, 3]} (also written to folder/real_views.npz)."""
    import numpy as np
    import torch

    from actionparty_env.games import get_game
    from actionparty_env.model.checkpoint import save_checkpoint
    from actionparty_env.model.codebook import Codebook, unique_patches
    from actionparty_env.model.network import ModelConfig, WorldModel
    from actionparty_env.model.sprites import save_sprite_tables
    from actionparty_env.real import MeltingPotEngine
    from actionparty_env.simulator import StartState, StartStates
    from training.artefacts import build_sprite_tables, write_view_tables
    from training.store import open_writer

    game = get_game(substrate)
    engine, starts, real_views, episodes = MeltingPotEngine(), [], {}, []
    for seed in DREAM_START_SEEDS:
        step = engine.build(substrate, seed=seed)
        starts.append(StartState(step.frame, step.players))
        real_views[seed] = step.views
        episodes.append([step])
        for _ in range(10):  # a few more frames so that moving sprites have codes
            step = engine.step(np.random.default_rng(seed).integers(game.num_actions, size=engine.num_players))
            episodes[-1].append(step)
    folder.mkdir(parents=True, exist_ok=True)
    StartStates({substrate: starts}).save(folder)
    book = Codebook.from_patch_sets(unique_patches(s.frame) for episode in episodes for s in episode)
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=len(book), num_games=1, num_action_names=game.num_actions, max_players=4, dim=32,
                      depth=2, heads=2, window=2, pointer_dim=8, max_actions=game.num_actions)
    model = WorldModel(cfg, [substrate], list(game.action_names))
    model.patches.copy_(torch.from_numpy(book.patches.copy()))
    model.action_ids[0] = torch.arange(game.num_actions)
    save_checkpoint(model, folder)
    # The sprite table counts the same real steps, stored as training episodes beside the checkpoint.
    data = folder.parent / f"{folder.name}_episodes"
    env = open_writer(data)
    for number, (seed, episode) in enumerate(zip(DREAM_START_SEEDS, episodes)):
        store_real_episode(env, substrate, number, seed, episode)
    env.close()
    save_sprite_tables(folder, build_sprite_tables(model, str(data)))
    write_view_tables(folder, [substrate], steps=60, seed=1)
    np.savez_compressed(folder / REAL_VIEWS_FILE, **{str(s): v for s, v in real_views.items()})
    return real_views


@pytest.fixture(scope="session")
def dream_checkpoint(tmp_path_factory) -> Path:
    """`make_checkpoint`'s folder for coins, made once per session (tests only read it)."""
    return once_per_session(tmp_path_factory, "dream_checkpoint", make_checkpoint)


def tiny_coins_model():
    """A tiny random WorldModel of coins whose codebook comes from the bundled coins start states (with a
    one-code sprite table): a checkpoint's plumbing, no Melting Pot needed."""
    import numpy as np
    import torch

    from actionparty_env.games import get_game
    from actionparty_env.model.checkpoint import DEFAULT_CHECKPOINT
    from actionparty_env.model.codebook import Codebook, unique_patches
    from actionparty_env.model.network import ModelConfig, WorldModel
    from actionparty_env.model.sprites import SpriteTable
    from actionparty_env.simulator import StartStates

    starts = StartStates.load(DEFAULT_CHECKPOINT).states["coins"]
    game = get_game("coins")
    book = Codebook.from_patch_sets(unique_patches(s.frame) for s in starts)
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=len(book), num_games=1, num_action_names=game.num_actions, max_players=4, dim=16,
                      depth=1, heads=2, window=2, pointer_dim=8, max_actions=game.num_actions)
    model = WorldModel(cfg, ["coins"], list(game.action_names))
    model.patches.copy_(torch.from_numpy(book.patches.copy()))
    model.action_ids[0] = torch.arange(game.num_actions)
    model.sprite_tables = {"coins": SpriteTable(np.array([0]), np.zeros((1, 4, 4), bool), np.array([0]))}
    return model


@pytest.fixture(scope="session")
def coins_checkpoint(tmp_path_factory) -> Path:
    """`tiny_coins_model` saved as a checkpoint with the bundled coins start states (read it, never change it)."""
    from actionparty_env.model.checkpoint import DEFAULT_CHECKPOINT, save_checkpoint
    from actionparty_env.simulator import StartStates

    folder = tmp_path_factory.mktemp("tiny_coins_ck")
    save_checkpoint(tiny_coins_model(), folder)
    StartStates({"coins": StartStates.load(DEFAULT_CHECKPOINT).states["coins"]}).save(folder)
    return folder


@pytest.fixture
def coins_checkpoint_copy(coins_checkpoint, tmp_path) -> Path:
    """A fresh copy of `coins_checkpoint` for a test to damage."""
    import shutil

    return Path(shutil.copytree(coins_checkpoint, tmp_path / "ck"))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread; two threads on a busy 2-core machine ran 30x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session", autouse=True)
def caches_in_the_session_tmp(tmp_path_factory):
    """SB3's logger makes a folder per model (SB3-<time>) in the system temp dir unless SB3_LOGDIR says
    where: here the session's tmp dir (which pytest cleans up), for this process and its subprocesses."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SB3_LOGDIR", str(tmp_path_factory.mktemp("sb3_logs")))
        # Likewise torch.compile's caches (Inductor's kernels; /tmp/torchinductor_<user> unless told).
        mp.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path_factory.mktemp("inductor_cache")))
        yield
