"""Which codes a cell changes into: the changes each game makes, as a decoding rule.

The calibrated decoding (model/sampler.py) first decides whether a cell changes, then which code it
takes. Left to the code head alone, a changing cell sometimes takes a code the game never changes it
into: a wall drawn on the floor of coins, whose map size (so where its walls are) varies per build.
Melting Pot's world changes are few and fixed per game (a floor cell becomes a coin, an apple becomes
grass, a player arrives or leaves), so the table of changes seen in real training episodes restricts
the pick: a changing cell takes a code it was seen changing into from its previous code. A cell with
no such code stays as it is, unless the sprite rule forces it to change (then the pick is free).
The table comes from real training episodes (never the test split), built by `training/artefacts.py`:
`{game}/pairs` int64 [K], sorted, `previous * vocab_size + next` for every change seen (previous != next).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from actionparty_env.digests import record_digests

TRANSITIONS_FILE = "transitions.npz"


@dataclass
class TransitionTable:
    """One game's changes seen in training: `pairs` = previous * vocab_size + next, sorted."""

    pairs: np.ndarray  # [K] int64

    def allowed(self, game_codes: torch.Tensor, vocab_size: int) -> torch.Tensor:
        """[V, V] bool in the index space of `game_codes` (the codes a simulator may draw): may a cell
        showing code i change into code j."""
        codes = game_codes.cpu().numpy().astype(np.int64)
        grid = (codes[:, None] * vocab_size + codes[None, :]).ravel()
        pos = np.searchsorted(self.pairs, grid).clip(max=max(len(self.pairs) - 1, 0))
        seen = (self.pairs[pos] == grid) if len(self.pairs) else np.zeros(grid.shape, bool)
        return torch.from_numpy(seen.reshape(len(codes), len(codes)))


def save_transition_tables(folder: str | Path, tables: dict[str, TransitionTable]) -> Path:
    path = Path(folder) / TRANSITIONS_FILE
    np.savez_compressed(path, **{f"{game}/pairs": t.pairs for game, t in tables.items()})
    record_digests(folder, [TRANSITIONS_FILE])  # where the folder's config.json keeps digests
    return path


def load_transition_tables(folder: str | Path) -> dict[str, TransitionTable]:
    """The checkpoint folder's tables ({} where it has none)."""
    path = Path(folder) / TRANSITIONS_FILE
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as f:
        return {name.rsplit("/", 1)[0]: TransitionTable(f[name].astype(np.int64)) for name in f.files}
