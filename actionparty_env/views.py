"""Egocentric views: crop a global frame the way Melting Pot draws a player's own `RGB` view.

Melting Pot's view of a player at cell (row, col) facing f is a window of cells `forward` ahead,
`backward` behind, `left` and `right` to the sides, rotated so that the facing points up. Cells
outside the map are black (on a torus map the view wraps around). Sprites turn with the view, so the
crop is one table of pixel offsets per facing, built once, and a gather: `egocentric_view` (numpy,
one player) and `egocentric_views` (torch, B worlds x N players in one gather) share that table.
Players that are not alive see black, as in Melting Pot.

Two things the global frame does not say: sprites declared `noRotate` keep their orientation in
every view (often a floor under a rotating sprite, so only part of the 8x8 cell turns), and a
player's own avatar is drawn with its own `spriteMap` colours. Both are a fixed function of the
global patch, the facing and "is this my own cell", so a `ViewTable` fitted on real views lists the
patches drawn differently from the rotated global patch, and the crop swaps them in. This module
defines the table's keys (`view_keys`) and loads and applies tables; `training/artefacts.py` fits and
records them (`fit_view_table`, `write_view_tables`).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from actionparty_env.grid import CELL

VIEW_TABLES_FILE = "view_tables.npz"  # in a checkpoint folder: "{substrate}/keys", "{substrate}/patches"
_SIDES = ("left", "right", "forward", "backward")
# Fixed odd weights of a multiplicative hash of a patch's 48 32-bit words (int64, wraps the same way
# in numpy and torch); the low 3 bits of a key hold the facing and the "own cell" flag.
_HASH_W = np.random.default_rng(20261124).integers(1, 2**62, 48, dtype=np.int64) | 1


def _key(view_spec: Mapping) -> tuple[int, int, int, int, bool]:
    missing = [k for k in _SIDES if k not in view_spec]
    if missing:
        raise ValueError(f"view_spec lacks {missing}; expected keys {_SIDES} (+ 'centered', 'torus')")
    if view_spec.get("centered", False):
        # No Melting Pot substrate uses a centered view; refuse rather than guess dmlab2d's rule.
        raise ValueError("centered views are not supported (no Melting Pot substrate uses one)")
    sides = tuple(int(view_spec[k]) for k in _SIDES)
    if min(sides) < 0:
        raise ValueError(f"view_spec sides must be >= 0, got {dict(zip(_SIDES, sides))}")
    return (*sides, bool(view_spec.get("torus", False)))  # type: ignore[return-value]


def view_size(view_spec: Mapping) -> tuple[int, int]:
    """(height, width) of the view in pixels."""
    left, right, forward, backward, _ = _key(view_spec)
    return (forward + backward + 1) * CELL, (left + right + 1) * CELL


@lru_cache(maxsize=None)
def _offsets(key: tuple) -> np.ndarray:
    """int64 [4 facings, 2 (dy, dx), Vh, Vw]: world pixel of each view pixel, relative to the
    top-left pixel of the player's cell."""
    left, right, forward, backward, _ = key
    vh, vw = (forward + backward + 1) * CELL, (left + right + 1) * CELL
    y, x = np.meshgrid(np.arange(vh), np.arange(vw), indexing="ij")
    # Offsets in the facing-up view (down, right) from the player's cell, centred on the cell
    # (p - 3.5) so that rotating them also rotates each sprite about its own centre.
    u = y - forward * CELL - 3.5
    v = x - left * CELL - 3.5
    out = np.empty((4, 2, vh, vw), dtype=np.int64)
    # World (dy, dx) for facing N, E, S, W: "up" in the view is that compass direction.
    for facing, (dy, dx) in enumerate(((u, v), (v, -u), (-u, -v), (-v, u))):
        out[facing, 0] = (dy + 3.5).astype(np.int64)
        out[facing, 1] = (dx + 3.5).astype(np.int64)
    return out


def _cell_offsets(key: tuple) -> np.ndarray:
    """int64 [4, 2, Vr, Vc]: world cell of each view cell, relative to the player's cell."""
    return _offsets(key)[:, :, ::CELL, ::CELL] // CELL


def _place(ys, xs, h: int, w: int, torus: bool):
    """Map world pixel coordinates into the frame: wrap on a torus, else flag what lies outside."""
    if torus:
        return ys % h, xs % w, (ys == ys)
    inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
    return ys.clip(0, h - 1), xs.clip(0, w - 1), inside


def _patch_hash_torch(frames: torch.Tensor) -> torch.Tensor:
    """uint8 [B,H,W,3] -> int64 [B,R,C]: a hash of each cell's 8x8x3 patch."""
    b, h, w, _ = frames.shape
    cells = frames.reshape(b, h // CELL, CELL, w // CELL, CELL, 3).permute(0, 1, 3, 2, 4, 5)
    words = cells.contiguous().view(b, h // CELL, w // CELL, 192).view(torch.int32)
    weights = torch.as_tensor(_HASH_W, device=frames.device)
    return (words.long() * weights).sum(-1)


def view_keys(frames: torch.Tensor, cells: torch.Tensor, facing: torch.Tensor, view_spec: Mapping):
    """Table keys of every view cell, int64 [B,N,Vr,Vc] (hash of the global patch it shows, the
    facing, the player's own cell flag), and whether that cell lies on the map."""
    return _view_keys(frames, cells, facing, _key(view_spec))


def _view_keys(frames: torch.Tensor, cells: torch.Tensor, facing: torch.Tensor, key: tuple):
    b, h, w, _ = frames.shape
    rows, cols = h // CELL, w // CELL
    crel = _offsets_torch(key, frames.device)[1][facing]  # [B,N,2,Vr,Vc]
    rr, cc, inside = _place(cells[..., 0, None, None] + crel[:, :, 0], cells[..., 1, None, None] + crel[:, :, 1],
                            rows, cols, key[4])
    hashes = torch.gather(_patch_hash_torch(frames).view(b, rows * cols), 1, (rr * cols + cc).flatten(1))
    own = torch.zeros_like(rr)
    own[:, :, key[2], key[0]] = 1
    return (hashes.view(rr.shape) & ~7) | (facing[..., None, None] << 1) | own, inside


def view_tiles(views: torch.Tensor) -> torch.Tensor:
    """[...,Vh,Vw,3] -> [...,Vr,Vc,8,8,3] (one 8x8 tile per view cell); `_untile` inverts it."""
    *lead, vh, vw, _ = views.shape
    t = views.reshape(*lead, vh // CELL, CELL, vw // CELL, CELL, 3)
    return t.transpose(-4, -3)


def _untile(tiles: torch.Tensor) -> torch.Tensor:
    *lead, vr, vc, _, _, _ = tiles.shape
    return tiles.transpose(-4, -3).reshape(*lead, vr * CELL, vc * CELL, 3)


@dataclass
class ViewTable:
    """Patches Melting Pot draws differently in a view than the rotated global patch.

    keys int64 [K] sorted (patch hash, facing, own-cell flag); patches uint8 [K,8,8,3] as drawn in
    the view. Made by `training.artefacts.fit_view_table` from real views.
    """

    keys: np.ndarray
    patches: np.ndarray

    def __post_init__(self):
        self.keys = np.asarray(self.keys, dtype=np.int64)
        self.patches = np.asarray(self.patches, dtype=np.uint8).reshape(-1, CELL, CELL, 3)
        if len(self.keys) != len(self.patches) or np.any(np.diff(self.keys) <= 0):
            raise ValueError("ViewTable needs strictly increasing keys, one per patch")
        self._torch: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.keys)

    def on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._torch:
            self._torch[device] = (torch.from_numpy(self.keys).to(device),
                                   torch.from_numpy(self.patches).to(device))
        return self._torch[device]

    def save(self, path: str | Path, prefix: str = "") -> dict[str, np.ndarray]:
        """The arrays to store in an npz under `prefix` (e.g. "coins/"); written if `path` is set."""
        arrays = {f"{prefix}keys": self.keys, f"{prefix}patches": self.patches}
        if path:
            np.savez_compressed(path, **arrays)
        return arrays

    @classmethod
    def load(cls, npz, prefix: str = "") -> "ViewTable":
        return cls(npz[f"{prefix}keys"], npz[f"{prefix}patches"])


def egocentric_view(frame: np.ndarray, cell, facing: int, view_spec: Mapping, alive: bool = True,
                    table: ViewTable | None = None) -> np.ndarray:
    """One player's view: uint8 [Vh, Vw, 3] from a global uint8 frame [H, W, 3]."""
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame must be uint8 [H,W,3], got {frame.dtype} {frame.shape}")
    if not 0 <= int(facing) <= 3:
        raise ValueError(f"facing must be 0..3 (N, E, S, W), got {facing}")
    if table is not None:  # one code path for the table: the batched one
        views = egocentric_views(torch.from_numpy(frame)[None], torch.as_tensor(np.asarray(cell).reshape(1, 1, 2)),
                                 torch.as_tensor([[int(facing)]]), view_spec,
                                 torch.as_tensor([[bool(alive)]]), table)
        return views[0, 0].numpy()
    key = _key(view_spec)
    off = _offsets(key)[int(facing)]
    view = np.zeros(off.shape[1:] + (3,), dtype=np.uint8)
    if not alive:
        return view
    ys, xs, inside = _place(int(cell[0]) * CELL + off[0], int(cell[1]) * CELL + off[1],
                            frame.shape[0], frame.shape[1], key[4])
    view[inside] = frame[ys[inside], xs[inside]]
    return view


@lru_cache(maxsize=None)
def _offsets_torch(key: tuple, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(_offsets(key)).to(device), torch.from_numpy(_cell_offsets(key)).to(device)


def egocentric_views(frames: torch.Tensor, cells: torch.Tensor, facing: torch.Tensor,
                     view_spec: Mapping, alive: torch.Tensor | None = None,
                     table: ViewTable | None = None) -> torch.Tensor:
    """All players' views in one gather.

    frames uint8 [B,H,W,3], cells [B,N,2] (row, col), facing [B,N], alive bool [B,N] or None,
    table: patches drawn differently in views (None: rotate every patch)
    -> uint8 [B,N,Vh,Vw,3] on the frames' device.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
        raise ValueError(f"frames must be uint8 [B,H,W,3], got {frames.dtype} {tuple(frames.shape)}")
    b, h, w, _ = frames.shape
    key = _key(view_spec)
    off = _offsets_torch(key, frames.device)[0]  # [4,2,Vh,Vw]
    cells = torch.as_tensor(cells, device=frames.device).long()
    facing = torch.as_tensor(facing, device=frames.device).long()
    if cells.shape[:1] != (b,) or cells.shape[-1] != 2 or facing.shape != cells.shape[:2]:
        raise ValueError(f"cells [B,N,2] and facing [B,N] must match frames' B={b}, got "
                         f"{tuple(cells.shape)} and {tuple(facing.shape)}")
    # Checked where it costs no wait: on a GPU the facings are the sampler's (an argmax over 4), and
    # reading them back would stall every batched step (an out-of-range index there is a device assert).
    if facing.device.type == "cpu" and ((facing < 0) | (facing > 3)).any():
        raise ValueError("facing must be 0..3 (N, E, S, W)")
    live = (torch.ones_like(facing, dtype=torch.bool) if alive is None
            else torch.as_tensor(alive, device=frames.device).bool())
    rel = off[facing]  # [B,N,2,Vh,Vw]
    ys, xs, inside = _place(cells[..., 0, None, None] * CELL + rel[:, :, 0],
                            cells[..., 1, None, None] * CELL + rel[:, :, 1], h, w, key[4])
    inside = inside & live[..., None, None]
    flat = (ys * w + xs).flatten(1)  # [B, N*Vh*Vw]
    pix = torch.gather(frames.reshape(b, h * w, 3), 1, flat[..., None].expand(-1, -1, 3))
    views = pix.view(*ys.shape, 3) * inside[..., None]
    if table is None or len(table) == 0:
        return views
    # Swap in the patches the table knows: look up (patch hash, facing, own cell) per view cell.
    keys, patches = table.on(frames.device)
    q, cin = _view_keys(frames, cells, facing, key)
    idx = torch.searchsorted(keys, q).clamp(max=len(keys) - 1)
    hit = (keys[idx] == q) & cin & live[..., None, None]  # [B,N,Vr,Vc]
    return _untile(torch.where(hit[..., None, None, None], patches[idx], view_tiles(views)))
