"""Sprite-consistent drawing: each live player is drawn once, at the cell and facing its own state heads
predict, and no player sprite appears anywhere else.

The world model predicts every player's next state (action tokens' heads) and then draws the frame.
Left alone, the frame's cells do not always agree with the states (a player drawn twice, or not at
all: benchmarks/results/fidelity_h100.md). Melting Pot draws a player as a sprite on its cell, and
some codes of the codebook only ever show a player ("player codes"). So when the frame is drawn, the
logits are constrained (the model still picks the code, among the allowed ones):
- on a cell where no live player is predicted: no player code;
- on a live player's predicted cell: only the codes seen showing that player slot with that facing
  (left free where the table knows none).
Where a game draws its players' colours per build (coins: `GameSpec.map_varies`), a slot's sprites
differ between episodes; there the start frame decides: a player may only be drawn with codes of the
appearance group (codes one slot showed within one training episode, joined) its start code is in.
The table comes from real training episodes (never the test split), per game:
`python -m actionparty_env.model.sprites --checkpoint DIR --data LMDB [LMDB...]` writes DIR/sprites.npz.
"""
from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

SPRITES_FILE = "sprites.npz"  # in a checkpoint folder: "{game}/codes" [K], "/owners" [K, P, 4], "/groups" [K]
ELSEWHERE_SHARE = 0.01  # a player code appears on a cell without a player at most this share of times


@dataclass
class SpriteTable:
    """One game's player codes and which (slot, facing) each was seen showing."""

    codes: np.ndarray   # [K] int64, codebook codes only ever seen under a live player
    owners: np.ndarray  # [K, max_players, 4] bool
    groups: np.ndarray  # [K] int64, appearance group of each code

    def allowed(self, game_codes: torch.Tensor, max_players: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """In the index space of `game_codes` (the codes a simulator may draw, [V]): is_player [V] bool,
        owned [max_players, 4, V] bool and group [V] int64 (-1: not a player code)."""
        index = {int(c): j for j, c in enumerate(game_codes.tolist())}
        is_player = torch.zeros(len(index), dtype=torch.bool)
        owned = torch.zeros(max_players, 4, len(index), dtype=torch.bool)
        group = torch.full((len(index),), -1, dtype=torch.long)
        for k, code in enumerate(self.codes.tolist()):
            if code in index:
                is_player[index[code]] = True
                owned[:, :, index[code]] = torch.from_numpy(self.owners[k, :max_players])
                group[index[code]] = int(self.groups[k])
        return is_player, owned, group


def restrict_to_start_appearance(owned: torch.Tensor, group: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """owned [N, 4, V], group [V] and each player's code index at its start cell, start [B, N] (-1: none)
    -> [B, N, 4, V]: a player whose start code is a player code keeps only that code's appearance group;
    any other player owns nothing, so its cell is left to the model (its colours are not in the table)."""
    start_group = torch.where(start >= 0, group[start.clamp(min=0)], -1)  # [B, N]
    same = (group[None, None, :] == start_group[..., None]) & (start_group >= 0)[..., None]  # [B, N, V]
    return owned[None] & same[:, :, None, :]


def constrain_logits(logits: torch.Tensor, is_player: torch.Tensor, owned: torch.Tensor, cells: torch.Tensor,
                     facing: torch.Tensor, live: torch.Tensor, cols: int) -> torch.Tensor:
    """logits [B, R*C, V] of the next frame; is_player [V] (SpriteTable.allowed), owned [B, N, 4, V]
    (SpriteTable.allowed's, per world); the predicted cells [B, N, 2], facing [B, N] and live [B, N]
    (alive and present)."""
    b, rc, v = logits.shape
    n = cells.shape[1]
    cell = cells[..., 0] * cols + cells[..., 1]
    spare = torch.full_like(cell, rc)  # a padding row: where dead players write
    occupied = torch.zeros(b, rc + 1, dtype=torch.bool, device=logits.device)
    occupied.scatter_(1, torch.where(live, cell, spare), True)
    out = logits.masked_fill(is_player & ~occupied[:, :rc, None], float("-inf"))
    worlds, slots = torch.arange(b, device=logits.device)[:, None], torch.arange(n, device=logits.device)[None]
    allowed = owned[worlds, slots, facing]  # [B, N, V]
    restrict = live & allowed.any(-1)
    rows = out.gather(1, cell[..., None].expand(-1, -1, v)).masked_fill(restrict[..., None] & ~allowed, float("-inf"))
    padded = torch.cat([out, out.new_zeros(b, 1, v)], 1)
    padded.scatter_(1, torch.where(restrict, cell, spare)[..., None].expand(-1, -1, v), rows)
    return padded[:, :rc]


def build_sprite_tables(model, data: str | list[str], split: str = "train", every: int = 1) -> dict[str, SpriteTable]:
    """Count, over real episodes of `data` (one LMDB dataset or several; frames encoded with the model's
    codebook), which codes lie under which live (slot, facing) and which lie elsewhere."""
    from tqdm import tqdm

    from training.dataset import list_episodes, read_episode

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


def save_sprite_tables(folder: str | Path, tables: dict[str, SpriteTable]) -> Path:
    path = Path(folder) / SPRITES_FILE
    arrays = {}
    for game, table in tables.items():
        arrays[f"{game}/codes"], arrays[f"{game}/owners"] = table.codes, table.owners
        arrays[f"{game}/groups"] = table.groups
    np.savez_compressed(path, **arrays)
    return path


def load_sprite_tables(folder: str | Path) -> dict[str, SpriteTable]:
    """The checkpoint folder's tables ({} where it has none)."""
    path = Path(folder) / SPRITES_FILE
    if not path.is_file():
        return {}
    with np.load(path) as f:
        games = {name.rsplit("/", 1)[0] for name in f.files}
        try:
            return {g: SpriteTable(f[f"{g}/codes"], f[f"{g}/owners"], f[f"{g}/groups"]) for g in games}
        except KeyError as e:
            raise ValueError(f"{path}: incomplete sprite table ({e.args[0]}); rebuild it with "
                             f"python -m actionparty_env.model.sprites --checkpoint {path.parent} --data LMDB") from e


def main(argv: list[str] | None = None) -> None:
    from actionparty_env.model.checkpoint import load_world_model

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="checkpoint folder (sprites.npz is written there)")
    p.add_argument("--data", required=True, nargs="+", help="LMDB datasets with training episodes")
    p.add_argument("--split", default="train")
    args = p.parse_args(argv)
    model = load_world_model(args.checkpoint)
    tables = build_sprite_tables(model, args.data, args.split)
    path = save_sprite_tables(args.checkpoint, tables)
    sizes = [len(t.codes) for t in tables.values()]
    print(f"wrote {path}: {len(tables)} games, {sum(sizes)} player codes ({min(sizes)} to {max(sizes)} per game)")


if __name__ == "__main__":
    main()
