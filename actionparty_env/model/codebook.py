"""Exact tokenisation of Melting Pot frames: one integer code per 8x8 sprite cell.

Melting Pot draws every map cell as one 8x8 sprite (or a few stacked ones) from a small alphabet, so a
frame is exactly a grid of codes. Encoding is a lookup (unknown patches fall back to the nearest known
patch by L2, and are counted), decoding is an index into the patch table. This is the model's exact
copy path and its 8-bit quantisation: a generated cell is always a real patch.
"""
from __future__ import annotations

import numpy as np
import torch

from actionparty_env.grid import CELL

PATCH_DIM = CELL * CELL * 3


def frame_to_cells(frame: np.ndarray) -> np.ndarray:
    """uint8 [H,W,3] -> uint8 [R*C, 192], cells in row-major order."""
    h, w, _ = frame.shape
    rows, cols = h // CELL, w // CELL
    cells = frame.reshape(rows, CELL, cols, CELL, 3).transpose(0, 2, 1, 3, 4)
    return np.ascontiguousarray(cells.reshape(rows * cols, PATCH_DIM))


# Rows are told apart by a 64-bit multiply-add hash of their 24 uint64 words: a 1-D sort instead of
# numpy's row-wise unique, about 100x faster (two distinct patches colliding: ~2^-64 per pair).
_HASH_KEYS = np.random.default_rng(20261124).integers(1, 2**63, PATCH_DIM // 8, dtype=np.uint64) | np.uint64(1)


def unique_rows(cells: np.ndarray):
    """(representative index of each distinct row, inverse [len(cells)]) of uint8 [n, 192] rows."""
    h = (np.ascontiguousarray(cells).view(np.uint64) * _HASH_KEYS).sum(axis=1)
    _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


def unique_patches(frame: np.ndarray) -> np.ndarray:
    """The distinct 8x8 patches of a frame, uint8 [U, 192]."""
    cells = frame_to_cells(frame)
    return cells[unique_rows(cells)[0]]


class Codebook:
    """A table of V distinct patches; code i is `patches[i]` (uint8 [V, 8, 8, 3])."""

    def __init__(self, patches: np.ndarray):
        patches = np.asarray(patches, dtype=np.uint8).reshape(-1, PATCH_DIM)
        if len(patches) == 0:
            raise ValueError("a codebook needs at least one patch")
        self.patches = patches.reshape(-1, CELL, CELL, 3)
        self._flat = patches
        self._index = {p.tobytes(): i for i, p in enumerate(patches)}
        if len(self._index) != len(patches):
            raise ValueError("codebook patches must be distinct")
        self.unknown_patches = 0  # patches encoded by their nearest neighbour so far
        self._torch_patches: dict[torch.device, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self._flat)

    @classmethod
    def from_patch_sets(cls, patch_sets) -> "Codebook":
        """Build from iterables of uint8 [U,192] arrays; codes sorted by patch bytes (deterministic)."""
        seen: set[bytes] = set()
        for patches in patch_sets:
            seen.update(p.tobytes() for p in np.asarray(patches, dtype=np.uint8).reshape(-1, PATCH_DIM))
        ordered = sorted(seen)
        return cls(np.frombuffer(b"".join(ordered), dtype=np.uint8).reshape(len(ordered), PATCH_DIM))

    def encode(self, frame: np.ndarray) -> np.ndarray:
        """uint8 [H,W,3] -> int64 [R,C]."""
        h, w, _ = frame.shape
        if h % CELL or w % CELL:
            raise ValueError(f"frame shape {frame.shape} is not a grid of {CELL}x{CELL} cells")
        cells = frame_to_cells(frame)
        first, inverse = unique_rows(cells)
        uniq = cells[first]
        codes = self.lookup(uniq)
        missing = codes < 0
        if missing.any():
            self.unknown_patches += int(missing.sum())
            codes[missing] = self.nearest(uniq[missing])
        return codes[inverse].reshape(h // CELL, w // CELL)

    def lookup(self, patches: np.ndarray) -> np.ndarray:
        """int64 [n]: the code of each uint8 patch ([n, 8, 8, 3] or [n, 192]), -1 where the codebook has none."""
        flat = np.asarray(patches, dtype=np.uint8).reshape(-1, PATCH_DIM)
        return np.array([self._index.get(p.tobytes(), -1) for p in flat], dtype=np.int64)

    def nearest(self, patches: np.ndarray) -> np.ndarray:
        """Codes of the closest known patches (L2 in RGB), for patches never seen in training."""
        a = patches.astype(np.float32)
        b = self._flat.astype(np.float32)
        d = (a * a).sum(1, keepdims=True) - 2 * a @ b.T + (b * b).sum(1)[None]
        return d.argmin(1).astype(np.int64)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """int64 [..., R, C] -> uint8 [..., R*8, C*8, 3] on the codes' device."""
        table = self._torch_patches.get(codes.device)
        if table is None:
            table = torch.from_numpy(self.patches.copy()).to(codes.device)
            self._torch_patches[codes.device] = table
        *lead, rows, cols = codes.shape
        px = table[codes]  # [..., R, C, 8, 8, 3]
        px = px.movedim(-4, -3)  # [..., R, 8, C, 8, 3]
        return px.reshape(*lead, rows * CELL, cols * CELL, 3)

    def decode_numpy(self, codes: np.ndarray) -> np.ndarray:
        rows, cols = codes.shape
        px = self.patches[codes].transpose(0, 2, 1, 3, 4)
        return px.reshape(rows * CELL, cols * CELL, 3)
