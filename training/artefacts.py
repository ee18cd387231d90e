"""The one place that builds a checkpoint's artefacts; the runtime (actionparty_env) only loads them.

- Sprite tables, `sprites.npz` (read by `actionparty_env.model.sprites.load_sprite_tables`): which
  codes only ever show a live player, and which (slot, facing) and appearance group each showed, counted
  over real training episodes (never the test split) with the model's codebook.
- Transition tables, `transitions.npz` (read by `actionparty_env.model.transitions`): which code
  each cell was seen changing into from which, over real training episodes, with the model's codebook.
- View tables, `view_tables.npz` (read by `actionparty_env.views.ViewTable.load`): the patches
  Melting Pot draws differently in a player's own view than the rotated global patch, fitted on real
  random steps of every substrate (needs Melting Pot).
- Start states, `start_states.npz` (read by `actionparty_env.simulator.StartStates.load`): real
  states from held-out (validation) episodes.

`training/bundle.py` calls them all; each also has a command:

    python -m training.artefacts sprites --checkpoint DIR --data LMDB [LMDB...]
    python -m training.artefacts transitions --checkpoint DIR --data LMDB [LMDB...]
    python -m training.artefacts views --checkpoint DIR [--substrates a,b] [--steps 300]
    python -m training.artefacts starts --checkpoint DIR --data LMDB [LMDB...]
"""
from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from actionparty_env.digests import record_digests
from actionparty_env.grid import PlayerStates
from actionparty_env.model.sprites import SpriteTable, save_sprite_tables
from actionparty_env.model.transitions import TransitionTable, save_transition_tables
from actionparty_env.simulator import StartState, StartStates
from actionparty_env.views import VIEW_TABLES_FILE, ViewTable, egocentric_views, view_keys, view_tiles
from training.store import list_episodes, read_episode

ELSEWHERE_SHARE = 0.01  # a player code appears on a cell without a player at most this share of times


# ----------------------------------------------------------------------------- sprite tables

def build_sprite_tables(model, data: str | Sequence[str], split: str = "train", every: int = 1
                        ) -> dict[str, SpriteTable]:
    """Count, over real episodes of `data` (one LMDB dataset or several; frames encoded with the model's
    codebook), which codes lie under which live (slot, facing) and which lie elsewhere."""
    from tqdm import tqdm

    book, max_players = model.codebook(), model.cfg.max_players
    under: dict[str, dict[int, Counter]] = defaultdict(lambda: defaultdict(Counter))
    elsewhere: dict[str, Counter] = defaultdict(Counter)
    shown: dict[str, list[set]] = defaultdict(list)  # per game: the codes each (episode, slot) showed
    sources = [data] if isinstance(data, str) else list(data)
    keys = [(path, key) for path in sources for key in list_episodes(path, split=split)]
    for path, key in tqdm(keys, desc=f"sprite tables ({split})"):
        ep = read_episode(path, key)
        game = ep.header["substrate"]
        by_slot = [set() for _ in range(ep.cells.shape[1])]
        shown[game] += by_slot
        for t in range(0, len(ep.frames), every):
            codes = book.encode(ep.frames[t])
            occupied = np.zeros(codes.shape, bool)
            for i in np.flatnonzero(ep.alive[t]):
                r, c = ep.cells[t, i]
                if 0 <= r < codes.shape[0] and 0 <= c < codes.shape[1]:
                    occupied[r, c] = True
                    under[game][int(codes[r, c])][(int(i), int(ep.facing[t, i]))] += 1
                    by_slot[i].add(int(codes[r, c]))
            elsewhere[game].update(codes[~occupied].tolist())
    tables = {}
    for game, per_code in under.items():
        codes = sorted(c for c, seen in per_code.items() if elsewhere[game][c] <= ELSEWHERE_SHARE * sum(seen.values()))
        owners = np.zeros((len(codes), max_players, 4), bool)
        for k, code in enumerate(codes):
            for slot, face in per_code[code]:
                owners[k, slot, face] = True
        tables[game] = SpriteTable(np.asarray(codes, np.int64), owners, appearance_groups(codes, shown[game]))
    return tables


def build_transition_tables(model, data: str | Sequence[str], split: str = "train") -> dict[str, TransitionTable]:
    """The changes (previous code -> next code, previous != next) each game's cells make between
    consecutive frames of real episodes of `data`, with the model's codebook."""
    from tqdm import tqdm

    book, vocab = model.codebook(), model.cfg.vocab_size
    pairs: dict[str, set] = defaultdict(set)
    sources = [data] if isinstance(data, str) else list(data)
    keys = [(path, key) for path in sources for key in list_episodes(path, split=split)]
    for path, key in tqdm(keys, desc=f"transition tables ({split})"):
        ep = read_episode(path, key)
        codes = np.stack([book.encode(f) for f in ep.frames]).astype(np.int64)
        prev, nxt = codes[:-1], codes[1:]
        changed = prev != nxt
        pairs[ep.header["substrate"]].update((prev[changed] * vocab + nxt[changed]).tolist())
    return {game: TransitionTable(np.asarray(sorted(seen), np.int64)) for game, seen in pairs.items()}


def appearance_groups(codes: list[int], shown: list[set]) -> np.ndarray:
    """Join the codes that one slot showed within one episode (union-find); [K] group ids."""
    parent = {c: c for c in codes}

    def root(c: int) -> int:
        while parent[c] != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c
    for seen in shown:
        members = [c for c in seen if c in parent]
        for c in members[1:]:
            parent[root(c)] = root(members[0])
    roots = sorted({root(c) for c in codes})
    return np.asarray([roots.index(root(c)) for c in codes], np.int64)


# ----------------------------------------------------------------------------- view tables

def fit_view_table(frames: np.ndarray, cells: np.ndarray, facing: np.ndarray, views: np.ndarray,
                   view_spec: Mapping) -> ViewTable:
    """Learn a ViewTable from real samples: frames uint8 [S,H,W,3], cells [S,N,2], facing [S,N] and the
    engine's own views uint8 [S,N,Vh,Vw,3] (all-black views, i.e. dead players, are skipped). A key
    seen with several view patches keeps the most frequent one."""
    frames, cells, facing = (torch.as_tensor(np.asarray(x)) for x in (frames, cells, facing))
    real = torch.as_tensor(np.asarray(views))
    cells, facing = cells.long(), facing.long()
    alive = real.flatten(2).any(-1).bool()
    keys, inside = view_keys(frames, cells, facing, view_spec)
    mine = view_tiles(egocentric_views(frames, cells, facing, view_spec, alive))
    use = inside & alive[..., None, None]
    keys, real_p, mine_p = keys[use].numpy(), view_tiles(real)[use].flatten(1).numpy(), mine[use].flatten(1).numpy()
    # Count each (key, view patch) pair; per key keep the most frequent patch if it differs from
    # the rotated global patch (which is the same for every sample of a key).
    _, pair, counts = np.unique(np.column_stack([keys.view(np.uint8).reshape(-1, 8), real_p]), axis=0,
                                return_index=True, return_counts=True)
    order = np.lexsort((-counts, keys[pair]))
    first = pair[order][np.r_[True, np.diff(keys[pair][order]) != 0]]
    first = first[(real_p[first] != mine_p[first]).any(1)]
    first = first[np.argsort(keys[first])]
    return ViewTable(keys[first], real_p[first])


def record_view_table(substrate: str, steps: int = 300, seed: int = 0) -> ViewTable:
    """Fit a ViewTable on `steps` uniformly random steps of the real game (needs Melting Pot)."""
    from actionparty_env.games import get_game
    from actionparty_env.real import MeltingPotEngine

    game = get_game(substrate)
    engine = MeltingPotEngine()
    step = engine.build(substrate, seed=seed)
    rng = np.random.default_rng(seed)
    frames, cells, facing, views = [], [], [], []
    for _ in range(steps):
        frames.append(step.frame), cells.append(step.cells), facing.append(step.facing), views.append(step.views)
        step = engine.step(rng.integers(game.num_actions, size=engine.num_players))
        if step.done:
            step = engine.reset(int(rng.integers(2**31 - 1)))
    return fit_view_table(np.stack(frames), np.stack(cells), np.stack(facing), np.stack(views), game.view)


def write_view_tables(folder: str | Path, substrates: Sequence[str] | None = None, steps: int = 300,
                      seed: int = 0) -> Path:
    """Record a ViewTable for each substrate (default: the whole catalog) into a checkpoint folder's
    view_tables.npz (needs Melting Pot; about 10 minutes for all 49 on one core)."""
    from tqdm import tqdm

    from actionparty_env.games import load_catalog

    arrays: dict[str, np.ndarray] = {}
    for substrate in tqdm(list(substrates or load_catalog()), desc="view tables"):
        arrays.update(record_view_table(substrate, steps, seed).save(None, prefix=f"{substrate}/"))
    path = Path(folder) / VIEW_TABLES_FILE
    np.savez_compressed(path, **arrays)
    record_digests(folder, [VIEW_TABLES_FILE])  # where the folder's config.json keeps digests
    return path


# ----------------------------------------------------------------------------- start states

STARTS_WANTED = 32  # start states per substrate the bundle aims at


def start_states(data: str | Sequence[str], split: str = "val", frames=(0, 50)) -> StartStates:
    """Frames `frames` (0: the real reset) of every `split` episode of one or more datasets, with their
    players' states; a state identical to one already taken (same frame, cells, facing, alive) is kept
    once. Per substrate in key order, so the same data give the same file."""
    states: dict[str, list[StartState]] = defaultdict(list)
    seen: set[bytes] = set()
    for path in [data] if isinstance(data, (str, Path)) else list(data):
        for key in list_episodes(path, split=split):
            ep = read_episode(path, key)
            for t in frames:
                if t >= len(ep.frames):
                    continue
                state = StartState(ep.frames[t], PlayerStates(ep.cells[t], ep.facing[t], ep.alive[t]))
                digest = b"".join(np.ascontiguousarray(a).tobytes() for a in
                                  (state.frame, *state.players.arrays().values()))
                if digest not in seen:
                    seen.add(digest)
                    states[ep.header["substrate"]].append(state)
    return StartStates(dict(sorted(states.items())))


def start_state_counts(states: StartStates, wanted: int = STARTS_WANTED) -> tuple[dict[str, int], list[str]]:
    """({substrate: number of start states}, the substrates of the catalog with fewer than `wanted`)."""
    from actionparty_env.games import load_catalog

    counts = {name: len(v) for name, v in states.states.items()}
    short = [name for name in load_catalog() if counts.get(name, 0) < wanted]
    return counts, short


# ----------------------------------------------------------------------------- command

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.artefacts", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="artefact", required=True)
    sprites = sub.add_parser("sprites", help="write DIR/sprites.npz from training episodes")
    sprites.add_argument("--checkpoint", required=True, help="checkpoint folder (sprites.npz is written there)")
    sprites.add_argument("--data", required=True, nargs="+", help="LMDB datasets with training episodes")
    sprites.add_argument("--split", default="train")
    sprites.add_argument("--every", type=int, default=1, help="count every k-th frame")
    transitions = sub.add_parser("transitions", help="write DIR/transitions.npz from training episodes")
    transitions.add_argument("--checkpoint", required=True, help="checkpoint folder (transitions.npz is written there)")
    transitions.add_argument("--data", required=True, nargs="+", help="LMDB datasets with training episodes")
    transitions.add_argument("--split", default="train")
    views = sub.add_parser("views", help="write DIR/view_tables.npz from the real game (needs Melting Pot)")
    views.add_argument("--checkpoint", required=True)
    views.add_argument("--substrates", default=None, help="comma-separated (default: the whole catalog)")
    views.add_argument("--steps", type=int, default=300)
    views.add_argument("--seed", type=int, default=0)
    starts = sub.add_parser("starts", help="write DIR/start_states.npz from held-out episodes")
    starts.add_argument("--checkpoint", required=True)
    starts.add_argument("--data", required=True, nargs="+", help="LMDB datasets (frames 0 and 50 of each episode)")
    starts.add_argument("--split", default="val")
    args = p.parse_args(argv)
    if args.artefact == "sprites":
        from actionparty_env.model.checkpoint import load_world_model

        tables = build_sprite_tables(load_world_model(args.checkpoint), args.data, args.split, args.every)
        path = save_sprite_tables(args.checkpoint, tables)
        sizes = [len(t.codes) for t in tables.values()]
        print(f"wrote {path}: {len(tables)} games, {sum(sizes)} player codes ({min(sizes)} to {max(sizes)} per game)")
    elif args.artefact == "transitions":
        from actionparty_env.model.checkpoint import load_world_model

        tables = build_transition_tables(load_world_model(args.checkpoint), args.data, args.split)
        path = save_transition_tables(args.checkpoint, tables)
        sizes = [len(t.pairs) for t in tables.values()]
        print(f"wrote {path}: {len(tables)} games, {sum(sizes)} changes ({min(sizes)} to {max(sizes)} per game)")
    elif args.artefact == "views":
        path = write_view_tables(args.checkpoint, args.substrates.split(",") if args.substrates else None,
                                 args.steps, args.seed)
        print(f"wrote {path}")
    else:
        states = start_states(args.data, args.split)
        counts, short = start_state_counts(states)
        print(f"wrote {states.save(args.checkpoint)}: {sum(counts.values())} start states, "
              f"{min(counts.values(), default=0)} to {max(counts.values(), default=0)} per substrate"
              + (f"; fewer than {STARTS_WANTED}: {', '.join(short)}" if short else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
