"""Token layout, attention masks and 3-D rotary positions of the world model.

A time block k holds, in this order:
  G_k      1 game token
  P_k^i    N pose tokens (player i's slot, facing, alive), placed at its cell
  F_k      R*C frame tokens (one code per map cell), placed at their cell
  A_k^i    N action tokens (player i's slot and action a_k), placed at its cell
Who sees whom (key block <= query block unless said):
  G: G.                       F: G, F, all P, all A of earlier blocks.
  P^i: G, F, own P^i, own A^i of earlier blocks.    A^i: G, F, own P^i, own A^i.
So no subject token sees another player's subject token, and player j's action a_k reaches neither
F_k nor anyone's state prediction at step k; F_{k+1} sees every A_k and every P_{k+1}.

A layout and its mask depend only on the map size, the player count and which blocks it holds (their
time positions and parts), never on the worlds' contents, so both are built once and cached
(`layout_of`, `attention_bias`): the sampler's passes reuse them instead of rebuilding them per pass.

In the sampler's passes (one block after the cache) every frame query sees the same keys, all of them
but the block's own action tokens, which come last: a prefix (`frame_rows`). Those rows, nearly all of
a pass's, attend without a mask (`attend`), so SDPA takes its flash kernel with no bias to read; only
the game and subject rows keep the mask.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

GAME, POSE, FRAME, ACTION = 0, 1, 2, 3
ORDER = "GPFA"  # the token groups of a full time block, in order (the one place this order is written)


@dataclass(frozen=True)
class Tokens:
    """Where each token group sits in the hidden states of blocks laid out in ORDER (or a prefix of it):
    1 game token, N pose tokens, R*C frame tokens, N action tokens per block."""

    num_players: int
    num_cells: int

    def size(self, part: str) -> int:
        return 1 if part == "G" else self.num_cells if part == "F" else self.num_players

    def split(self, h: torch.Tensor, parts: str = ORDER) -> dict[str, torch.Tensor]:
        """h [..., L, d] of consecutive blocks laid out in `parts` -> {part: [..., T, size, d]}."""
        per_block = sum(self.size(p) for p in parts)
        blocks = h.view(*h.shape[:-2], h.shape[-2] // per_block, per_block, h.shape[-1])
        return dict(zip(parts, blocks.split([self.size(p) for p in parts], dim=-2)))


Pieces = tuple[tuple[int, str], ...]  # the time blocks of a layout, in order: (time position, parts)


@dataclass(eq=False)
class Layout:
    """Per-token metadata of a token sequence (all [L] long tensors), and what it was made from: the map
    and player count (`shape`) and its blocks (`pieces`), which is what the cached masks are keyed by.
    Layouts are shared through the caches: never write into their tensors."""

    kind: torch.Tensor
    block: torch.Tensor
    player: torch.Tensor  # -1 for game and frame tokens
    row: torch.Tensor
    col: torch.Tensor
    shape: tuple[int, int, int]  # (rows, cols, num_players)
    pieces: Pieces

    def __len__(self) -> int:
        return self.kind.numel()

    def cat(self, other: "Layout") -> "Layout":
        if other.shape != self.shape:
            raise ValueError(f"layouts of different maps or player counts: {self.shape} and {other.shape}")
        return Layout(*(torch.cat([a, b]) for a, b in zip(self.fields(), other.fields())), self.shape,
                      self.pieces + other.pieces)

    def fields(self):
        return (self.kind, self.block, self.player, self.row, self.col)


def block_layout(block: int, rows: int, cols: int, num_players: int, device, parts: str = ORDER) -> Layout:
    """Metadata of one time block at time position `block`; `parts` picks which token groups (in order) it holds."""
    return layout_of(rows, cols, num_players, ((block, parts),), torch.device(device))


@functools.lru_cache(maxsize=256)
def layout_of(rows: int, cols: int, num_players: int, pieces: Pieces, device: torch.device) -> Layout:
    """Metadata of consecutive time blocks, each given as (time position, parts). Cached."""
    with torch.inference_mode(False):  # cached tensors must stay usable outside an inference_mode block
        layouts = [_one_block(block, rows, cols, num_players, device, parts) for block, parts in pieces]
        return functools.reduce(Layout.cat, layouts)


def _one_block(block: int, rows: int, cols: int, num_players: int, device, parts: str) -> Layout:
    kinds, players, rr, cc = [], [], [], []
    cell_r = torch.arange(rows, device=device).repeat_interleave(cols)
    cell_c = torch.arange(cols, device=device).repeat(rows)
    slot = torch.arange(num_players, device=device)
    zeros_n = torch.zeros(num_players, dtype=torch.long, device=device)
    for part in parts:
        if part == "G":
            kinds.append(torch.full((1,), GAME, device=device)); players.append(torch.full((1,), -1, device=device))
            rr.append(torch.zeros(1, dtype=torch.long, device=device)); cc.append(torch.zeros(1, dtype=torch.long, device=device))
        elif part == "F":
            kinds.append(torch.full((rows * cols,), FRAME, device=device))
            players.append(torch.full((rows * cols,), -1, device=device)); rr.append(cell_r); cc.append(cell_c)
        else:  # P or A: rows/cols are filled in per sample from the players' cells
            kinds.append(torch.full((num_players,), POSE if part == "P" else ACTION, device=device))
            players.append(slot); rr.append(zeros_n); cc.append(zeros_n)
    kind = torch.cat(kinds).long()
    return Layout(kind, torch.full_like(kind, block), torch.cat(players).long(), torch.cat(rr), torch.cat(cc),
                  (rows, cols, num_players), ((block, parts),))


def visibility(q: Layout, k: Layout, isolate_subjects: bool = True) -> torch.Tensor:
    """bool [Lq, Lk]: may query token q attend to key token k. `isolate_subjects=False` is the
    ablation: subject tokens then see every player's subject tokens (same block and time rules)."""
    qk, kk = q.kind[:, None], k.kind[None, :]
    le = k.block[None, :] <= q.block[:, None]
    lt = k.block[None, :] < q.block[:, None]
    same = (q.player[:, None] == k.player[None, :]) & (q.player[:, None] >= 0)
    if not isolate_subjects:
        same = (q.player[:, None] >= 0) & (k.player[None, :] >= 0)
    k_game, k_frame = kk == GAME, kk == FRAME
    k_pose, k_act = kk == POSE, kk == ACTION
    shared = le & (k_game | k_frame)  # everyone but G sees game and frame tokens
    frame_q = shared | (le & k_pose) | (lt & k_act)
    pose_q = shared | (le & k_pose & same) | (lt & k_act & same)
    act_q = shared | (le & (k_pose | k_act) & same)
    game_q = le & k_game
    return torch.where(qk == FRAME, frame_q,
           torch.where(qk == POSE, pose_q,
           torch.where(qk == ACTION, act_q, game_q)))


@functools.lru_cache(maxsize=128)
def attention_bias(shape: tuple[int, int, int], query_pieces: Pieces, key_pieces: Pieces, isolate_subjects: bool,
                   dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """`visibility` of the layouts `layout_of(*shape, query_pieces)` and `layout_of(*shape, key_pieces)` as
    an additive mask [Lq, Lk] (0 where a query may attend, -inf elsewhere) in the activations' `dtype`, so
    SDPA needs no conversion per layer. Built once per pair of layouts and cached."""
    with torch.inference_mode(False):
        seen = visibility(layout_of(*shape, query_pieces, device), layout_of(*shape, key_pieces, device),
                          isolate_subjects)
        return torch.zeros(seen.shape, dtype=dtype, device=device).masked_fill_(~seen, float("-inf"))


@dataclass(frozen=True)
class FrameRows:
    """Query rows [start, stop) (a block's frame tokens) that all see exactly the first `keys` keys."""

    start: int
    stop: int
    keys: int


@functools.lru_cache(maxsize=128)
def frame_rows(shape: tuple[int, int, int], query_pieces: Pieces, key_pieces: Pieces,
               isolate_subjects: bool) -> FrameRows | None:
    """Where the queries of `layout_of(*shape, query_pieces)` hold one block's frame tokens and every one
    of them sees the same prefix of the keys (a pass of one block after the cache), those rows; else None
    (a training pass over several blocks, whose frame rows see different blocks). Plain Python over the
    pieces, by `visibility`'s rule for frame queries (G, F, P of blocks up to the query's, A of earlier
    ones; subject isolation does not touch them), so a step never reads a tensor for it; tests/test_model.py
    checks it against `visibility`."""
    if len(query_pieces) != 1 or "F" not in query_pieces[0][1]:
        return None
    tokens = Tokens(shape[2], shape[0] * shape[1])
    block, parts = query_pieces[0]
    start = sum(tokens.size(p) for p in parts[:parts.index("F")])
    keys, ended = 0, False
    for key_block, key_parts in key_pieces:
        for part in key_parts:
            seen = key_block < block or (key_block == block and part != "A")
            if seen and ended:
                return None  # a seen key after an unseen one: not a prefix
            ended = ended or not seen
            keys += tokens.size(part) if seen else 0
    return FrameRows(start, start + tokens.num_cells, keys)


@functools.lru_cache(maxsize=128)
def rows_bias(shape: tuple[int, int, int], query_pieces: Pieces, key_pieces: Pieces, isolate_subjects: bool,
              dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The mask `attend` takes: `attention_bias` without the `frame_rows` (those attend unmasked), or the
    whole of it where there are none; cached, so a pass slices nothing."""
    bias = attention_bias(shape, query_pieces, key_pieces, isolate_subjects, dtype, device)
    frame = frame_rows(shape, query_pieces, key_pieces, isolate_subjects)
    if frame is None:
        return bias
    with torch.inference_mode(False):
        return torch.cat([bias[:frame.start], bias[frame.stop:]])


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
           frame: FrameRows | None = None, frame_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Scaled dot-product attention of q [B, H, Lq, Dh] over k, v [B, H, Lk, Dh] under the additive `mask`
    [.., Lq, Lk]; with `frame`, `mask` holds only the other rows ([.., Lq - frame rows, Lk]) and the frame
    rows attend over the first `frame.keys` keys under `frame_mask` ([B, 1, 1, frame.keys] for keys hidden
    per world, or None). Same attention either way, up to float rounding (a shorter key row is summed
    in other blocks)."""
    if frame is None:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    s, e, n = frame.start, frame.stop, frame.keys
    others = F.scaled_dot_product_attention(torch.cat([q[:, :, :s], q[:, :, e:]], 2), k, v, attn_mask=mask)
    frames = F.scaled_dot_product_attention(q[:, :, s:e], k[:, :, :n], v[:, :, :n], attn_mask=frame_mask)
    return torch.cat([others[:, :, :s], frames, others[:, :, s:]], 2)


class Rope3D(torch.nn.Module):
    """Rotary positions over (time block, row, col): head_dim split into three rotary groups."""

    def __init__(self, head_dim: int, base: float = 100.0):
        super().__init__()
        t_dim = (head_dim // 4) // 2 * 2
        s_dim = ((head_dim - t_dim) // 2) // 2 * 2
        self.dims = (t_dim, s_dim, head_dim - t_dim - s_dim)
        for name, dim in zip(("t", "r", "c"), self.dims):
            inv = 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))
            self.register_buffer(f"inv_{name}", inv, persistent=False)

    def angles(self, block: torch.Tensor, row: torch.Tensor, col: torch.Tensor):
        """The tables `apply_rope` takes, [..., L, head_dim], for positions given as [..., L] tensors:
        each pair (even, odd) of dims has its angle's cos twice, and its sin as (-sin, sin)."""
        parts = [pos.float()[..., None] * inv for pos, inv in
                 ((block, self.inv_t), (row, self.inv_r), (col, self.inv_c))]
        ang = torch.cat(parts, dim=-1)
        cos, sin = ang.cos(), ang.sin()
        return torch.stack((cos, cos), dim=-1).flatten(-2), torch.stack((-sin, sin), dim=-1).flatten(-2)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [B, H, L, D]; cos/sin: `Rope3D.angles`' tables [B, 1, L, D] (or broadcastable). Rotates pairs
    (even, odd) to (x1 cos - x2 sin, x2 cos + x1 sin): x * cos + (x with each pair swapped) * sin, so the
    products run over whole rows, not over every other element (twice as fast on a CPU, same bits)."""
    xf = x.float()
    swapped = torch.stack((xf[..., 1::2], xf[..., 0::2]), dim=-1).flatten(-2)
    return (xf * cos + swapped * sin).type_as(x)
