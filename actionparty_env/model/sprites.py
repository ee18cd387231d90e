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
Where avatars carry a stamina bar in the cell north of them (actionparty_env/stamina.py), the codes
showing one are "attached": `constrain_attached` rules them out everywhere but north of a live player,
so a bar moves with its player instead of staying behind on the floor. They come from the codebook
and the game's own bar pattern, not from this table.
The table comes from real training episodes (never the test split), per game; it is built by
`training/artefacts.py` (`python -m training.artefacts sprites --checkpoint DIR --data LMDB [LMDB...]`
writes DIR/sprites.npz). This module only loads, saves and applies it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from actionparty_env.digests import record_digests

SPRITES_FILE = "sprites.npz"  # in a checkpoint folder: "{game}/codes" [K], "/owners" [K, P, 4], "/groups" [K]


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
    padded = torch.nn.functional.pad(logits, (0, 0, 0, 1))  # the one copy of the logits, with a spare row
    out = padded[:, :rc].masked_fill_(is_player & ~occupied[:, :rc, None], float("-inf"))
    worlds, slots = torch.arange(b, device=logits.device)[:, None], torch.arange(n, device=logits.device)[None]
    allowed = owned[worlds, slots, facing]  # [B, N, V]
    restrict = live & allowed.any(-1)
    rows = out.gather(1, cell[..., None].expand(-1, -1, v)).masked_fill(restrict[..., None] & ~allowed, float("-inf"))
    padded.scatter_(1, torch.where(restrict, cell, spare)[..., None].expand(-1, -1, v), rows)
    return out


def constrain_attached(logits: torch.Tensor, attached: torch.Tensor, cells: torch.Tensor, live: torch.Tensor,
                       rows: int, cols: int, torus: bool) -> torch.Tensor:
    """logits [B, R*C, V] of the next frame with the `attached` codes [V] (drawn only in the cell north
    of a live player: the stamina bar, actionparty_env/stamina.py) ruled out everywhere but there, given
    the predicted cells [B, N, 2] and live [B, N]. So a cell still showing the bar of a player that
    moved away or died must change (decide_codes forces it), as one showing a stray player sprite does."""
    b, rc, _ = logits.shape
    north = cells[..., 0] - 1
    has_north = live if torus else live & (north >= 0)  # off a non-wrapping map's top edge: no bar
    cell = (north % rows) * cols + cells[..., 1]
    spare = torch.full_like(cell, rc)  # a padding column: where the others write
    carries = torch.zeros(b, rc + 1, dtype=torch.bool, device=logits.device)
    carries.scatter_(1, torch.where(has_north, cell, spare), True)
    return logits.masked_fill(attached & ~carries[:, :rc, None], float("-inf"))


def save_sprite_tables(folder: str | Path, tables: dict[str, SpriteTable]) -> Path:
    path = Path(folder) / SPRITES_FILE
    arrays = {}
    for game, table in tables.items():
        arrays[f"{game}/codes"], arrays[f"{game}/owners"] = table.codes, table.owners
        arrays[f"{game}/groups"] = table.groups
    np.savez_compressed(path, **arrays)
    record_digests(folder, [SPRITES_FILE])  # where the folder's config.json keeps digests
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
                             f"python -m training.artefacts sprites --checkpoint {path.parent} --data LMDB") from e
