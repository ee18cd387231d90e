"""The multi-subject world model: a block-causal transformer over cell codes and subject tokens.

See attention.py for the token layout and who attends to whom. One forward pass embeds a list of time
blocks, runs the transformer (optionally on top of cached keys/values of earlier blocks) and returns
the hidden states; `heads` turns them into next-frame code logits and per-player next-state outputs.
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import asdict, dataclass

import torch
from torch import nn

from actionparty_env.games import load_catalog
from actionparty_env.grid import CELL, NUM_MOVES, HasPlayers, PlayerStates
from actionparty_env.model.codebook import Codebook
from actionparty_env.model.attention import (ACTION, FRAME, GAME, ORDER, POSE, Layout, Rope3D, Tokens, apply_rope,
                                             attend, block_layout, frame_rows, layout_of, rows_bias)


# How many graphs the compiled layers may hold (`WorldModel.compiled_layers`). Every pass shape (blocks held,
# the pass's parts, the player count, the map) is a graph of its own at first, and all layers share one code
# object (Layer.forward): dynamo's default of 8 a code object was passed by one process dreaming two models or
# games, after which the layers ran eagerly, unannounced (benchmarks/results/speed_h200_split_variants.md).
COMPILED_GRAPHS = 64


@dataclass
class ModelConfig:
    vocab_size: int            # number of cell codes (the codebook's size); code vocab_size is MASK
    num_games: int
    num_action_names: int      # size of the shared action-name vocabulary
    max_players: int = 16
    dim: int = 384
    depth: int = 8
    heads: int = 6
    mlp_ratio: float = 4.0
    window: int = 3            # earlier time blocks a block may see (training clips hold window+1 frames)
    pointer_dim: int = 64
    max_actions: int = 32      # actions per game at most (fruit_market has 25)
    # The method's parts, switchable for the ablations of benchmarks/fidelity.py:
    spatial_rope: bool = True        # subject tokens rotate with their player's cell (else: time only)
    subject_isolation: bool = True   # a subject token sees no other player's subject tokens
    frame_occupancy: bool = False    # each frame token is told which player (slot, facing) stands on it
    # What the game does (docs/ARCHITECTURE.md, "Game dynamics"); the defaults are the first checkpoint's heads.
    reward_bins: int = 0             # > 0: a categorical reward head over each game's own payoffs; 0: regression
    move_head: bool = False          # a player's next cell as a move (stay / one step / jump) instead of a pointer
    change_head: bool = False        # a per-cell "does this cell change" head, decoded at its calibrated rate
    # Training weights of the rare classes; the sampler undoes them (a weight w on a class multiplies its
    # odds by w in a cross-entropy minimiser, so log w comes off the logit).
    alive_flip_weight: float = 1.0   # deaths and respawns
    change_weight: float = 1.0       # changed cells, for the change head

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Blocks(HasPlayers):
    """Inputs of T consecutive time blocks of B worlds (N players, an R x C map). `cells`, `facing` and
    `alive` are read-only views of `players` (grid.HasPlayers)."""

    game: torch.Tensor       # [B] long
    codes: torch.Tensor      # [B, T, R, C] long (MASK = vocab_size)
    players: PlayerStates    # torch, [B, T, N, ...]: cells long (row, col), facing long, alive bool
    actions: torch.Tensor    # [B, T, N] long, action-name ids (ignored where a block has no A part)
    present: torch.Tensor    # [B, N] bool


class KVCache:
    """Keys and values of the committed blocks, per layer: at most `window` whole blocks (ORDER), oldest first.

    Time positions are the blocks' places in the window (0 = the oldest block held) and the block a pass
    adds sits at position `blocks`, so they are those of training (0..window) however long a world runs:
    an ever-growing block counter drifts in float32 RoPE (at block 1e7 the logit for one offset moved by
    0.6). When the window slides every cached key moves one place back, so at each commit the keys are
    turned anew to their places: only the first `Rope3D.dims[0]` dims of each head turn with time (the
    others turn with the cell, which never changes), and those are kept as they were before RoPE
    (`k_time`). Everything about the cache's shape is host-side Python (how many blocks it holds), so
    committing and sliding never read a tensor back from the device.

    The keys and values live in one buffer per layer with room for `window` blocks and one more: a pass
    writes its own keys and values into the room after the held ones and attends over the buffer's
    prefix (`Layer.forward`), so no pass copies the cache (a concatenation per layer and pass was a
    quarter of a batched step's GPU time, `benchmarks/results/step_profile_h200_default.md`), and a
    commit writes the new block in place, sliding the held blocks one block forward when the window is
    full. The buffers are the same tensors from step to step, so a recorded step writes nothing back.

    `static=True` keeps a visibility row per world (`key_ok`) once there is one, even when every key is
    visible, so that once the window is full a commit's shapes and branches never change: what a CUDA
    graph of the step needs (model/step_graph.py). The attention is the same either way.
    """

    def __init__(self, depth: int, window: int, rope: Rope3D, static: bool = False):
        self.window = window
        self.rope = rope
        self.static = static
        self.blocks = 0  # whole blocks held
        self.k: list[torch.Tensor | None] = [None] * depth       # [B, H, (window + 1) * Lb, Dh], the first Lc held
        self.k_time: list[torch.Tensor | None] = [None] * depth  # [B, H, Lc, dims[0]], before RoPE
        self.v: list[torch.Tensor | None] = [None] * depth       # as `k`
        self.layout: Layout | None = None
        self.key_ok: torch.Tensor | None = None  # [B, Lc] bool; None: every key is visible in every world
        self._hiding: list[bool] = []  # per block held: may some world not see some of its keys

    def append(self, new_kv: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], layout: Layout,
               key_ok: torch.Tensor | None) -> None:
        """Commit one block: `new_kv` per layer (its tokens' keys before and after RoPE, values, as
        `Layer.forward` returns them), laid out as `layout` (ORDER at time position `blocks`), and
        `key_ok` [B, Lb] (None: all visible)."""
        if layout.pieces != ((self.blocks, ORDER),):
            raise ValueError(f"the cache takes whole blocks at position {self.blocks}, got {layout.pieces}")
        # A full window slides: its oldest block leaves.
        block = len(layout)
        drop = block if self.blocks == self.window else 0

        def grown(held: torch.Tensor | None, new: torch.Tensor) -> torch.Tensor:
            return new if held is None else torch.cat([held[:, :, drop:], new], dim=2)

        def placed(buffer: torch.Tensor | None, new: torch.Tensor) -> torch.Tensor:
            if buffer is None:
                buffer = new.new_zeros(*new.shape[:2], (self.window + 1) * block, new.shape[3])
            if drop:  # block by block from the front: each copy reads a block before it is overwritten
                for j in range(self.window - 1):
                    buffer[:, :, j * block:(j + 1) * block] = buffer[:, :, (j + 1) * block:(j + 2) * block]
            end = self.held() - drop + block
            buffer[:, :, end - block:end] = new
            return buffer

        turns = self.rope.dims[0]
        for i, (raw, rotated, v) in enumerate(new_kv):
            self.k[i] = placed(self.k[i], rotated)  # its time dims are turned below, with the others'
            self.k_time[i] = grown(self.k_time[i], raw[..., :turns])
            self.v[i] = placed(self.v[i], v)
        if self.static and key_ok is None:
            key_ok = torch.ones(v.shape[0], len(layout), dtype=torch.bool, device=v.device)
        if key_ok is not None or self.key_ok is not None:
            every = functools.partial(torch.ones, v.shape[0], dtype=torch.bool, device=v.device)
            kept = len(self.layout) - drop if self.blocks else 0
            held = self.key_ok[:, drop:] if self.key_ok is not None else every(kept)
            self.key_ok = torch.cat([held, key_ok if key_ok is not None else every(len(layout))], dim=1)
        self._hiding.append(key_ok is not None)
        if drop:
            self._hiding.pop(0)
            if not any(self._hiding) and not self.static:
                self.key_ok = None
        else:
            self.blocks += 1
        self.layout = layout_of(*layout.shape, tuple((j, ORDER) for j in range(self.blocks)), layout.kind.device)
        time = self.layout.block
        cos, sin = (a[:, :turns] for a in self.rope.angles(time, torch.zeros_like(time), torch.zeros_like(time)))
        held = self.held()
        for k, turned in zip(self.k, apply_rope(torch.stack(self.k_time), cos, sin)):  # every layer's at once
            k[:, :, :held, :turns] = turned

    def held(self) -> int:
        """How many keys the cache holds (host-side: the blocks held times a block's tokens)."""
        return len(self.layout) if self.blocks else 0

    def steady(self) -> bool:
        """Whether a commit keeps every shape as it is: the window is full and, for a static cache,
        the visibility row exists (what a CUDA graph of the step was captured in)."""
        return self.blocks == self.window and (not self.static or self.key_ok is not None)

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor the cache holds, in a fixed order (`load` takes them back)."""
        return [*self.k, *self.k_time, *self.v, self.key_ok]

    def load(self, tensors: list[torch.Tensor]) -> None:
        d = len(self.k)
        self.k, self.k_time, self.v = list(tensors[:d]), list(tensors[d:2 * d]), list(tensors[2 * d:3 * d])
        self.key_ok = tensors[3 * d]

    def forget(self, worlds: torch.Tensor) -> None:
        """Hide all cached keys of the given worlds ([B] bool), e.g. after a reset."""
        if self.blocks:
            ok = self.key_ok if self.key_ok is not None else torch.ones(len(worlds), len(self.layout),
                                                                         dtype=torch.bool, device=worlds.device)
            self.key_ok = ok & ~worlds[:, None]
            self._hiding = [True] * self.blocks


class Layer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.heads = cfg.heads
        self.norm1 = nn.LayerNorm(cfg.dim)
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim, bias=False)
        self.proj = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.norm2 = nn.LayerNorm(cfg.dim)
        hidden = int(cfg.dim * cfg.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(cfg.dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, cfg.dim))

    def forward(self, x, cos, sin, mask, cache_k=None, cache_v=None, held: int = 0, frame=None, frame_mask=None):
        """`cache_k`, `cache_v`: a KVCache's buffers of this layer, whose first `held` keys come before x's;
        `mask`, `frame`, `frame_mask`: how the queries attend (attention.attend)."""
        b, l, d = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, l, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        k, v = qkv[1], qkv[2]
        q_rotated, rotated = apply_rope(qkv[:2], cos, sin)  # queries and keys in one pass of RoPE's kernels
        k_all, v_all = rotated, v
        if cache_k is not None:  # x's keys and values into the room after the held ones: the cache is not copied
            if held + l > cache_k.shape[2]:
                raise ValueError(f"a pass of {l} tokens after {held} cached keys overflows the cache's "
                                 f"{cache_k.shape[2]}: a pass holds at most one block")
            cache_k[:, :, held:held + l] = rotated
            cache_v[:, :, held:held + l] = v
            k_all, v_all = cache_k[:, :, :held + l], cache_v[:, :, :held + l]
        y = attend(q_rotated, k_all, v_all, mask, frame, frame_mask)
        x = x + self.proj(y.transpose(1, 2).reshape(b, l, d))
        x = x + self.mlp(self.norm2(x))
        return x, (k, rotated, v)  # both keys: the cache turns them to their place in its window


class WorldModel(nn.Module):
    """The network plus the tables that make it self-contained: the codebook's patches, which codes each
    game uses, and each game's action index -> shared action-name id."""

    def __init__(self, cfg: ModelConfig, games: list[str], action_vocab: list[str]):
        super().__init__()
        if len(games) != cfg.num_games or len(action_vocab) != cfg.num_action_names:
            raise ValueError("games / action_vocab do not match the model config")
        self.cfg = cfg
        self.games = list(games)
        self.action_vocab = list(action_vocab)
        self.register_buffer("patches", torch.zeros(cfg.vocab_size, CELL, CELL, 3, dtype=torch.uint8))
        self.register_buffer("game_codes", torch.ones(cfg.num_games, cfg.vocab_size, dtype=torch.bool))
        self.register_buffer("action_ids", torch.zeros(cfg.num_games, cfg.max_actions, dtype=torch.long))
        if cfg.reward_bins:  # each game's reward support (sorted; `reward_valid` marks its real bins)
            self.register_buffer("reward_support", torch.zeros(cfg.num_games, cfg.reward_bins))
            self.register_buffer("reward_valid", torch.ones(cfg.num_games, cfg.reward_bins, dtype=torch.bool))
        catalog = load_catalog()  # maps that wrap (a fact of the game, not learned: not saved)
        torus = [g in catalog and bool(catalog[g].view.get("torus", False)) for g in games]
        self.register_buffer("game_torus", torch.tensor(torus, dtype=torch.bool), persistent=False)
        self._codebook: Codebook | None = None
        self._compiled_layers: list[nn.Module] | None = None  # torch.compile'd views of self.layers, made on demand
        self.sprite_tables: dict = {}  # game -> sprites.SpriteTable (the checkpoint's sprites.npz), for drawing
        self.transition_tables: dict = {}  # game -> transitions.TransitionTable (transitions.npz), for drawing
        d = cfg.dim
        self.code_emb = nn.Embedding(cfg.vocab_size + 1, d)  # + MASK
        self.game_emb = nn.Embedding(cfg.num_games, d)
        self.slot_emb = nn.Embedding(cfg.max_players, d)
        self.facing_emb = nn.Embedding(4, d)
        self.alive_emb = nn.Embedding(2, d)
        self.action_emb = nn.Embedding(cfg.num_action_names, d)
        self.kind_emb = nn.Embedding(4, d)
        if cfg.frame_occupancy:
            self.occupant_emb = nn.Embedding(cfg.max_players * 4, d)  # slot * 4 + facing
        self.rope = Rope3D(d // cfg.heads)
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(d)
        self.code_head = nn.Linear(d, cfg.vocab_size)
        self.ptr_q = nn.Linear(d, cfg.pointer_dim)
        self.ptr_k = nn.Linear(d, cfg.pointer_dim)
        self.facing_head = nn.Linear(d, 4)
        self.alive_head = nn.Linear(d, 1)
        self.reward_head = nn.Linear(d, cfg.reward_bins or 1)
        if cfg.move_head:
            self.move_head = nn.Linear(d, NUM_MOVES)
        if cfg.change_head:
            self.change_head = nn.Linear(d, 1)
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    @property
    def mask_code(self) -> int:
        return self.cfg.vocab_size

    # ---- embedding -------------------------------------------------------------------------------
    def embed_block(self, blocks: Blocks, t: int, index: int, parts: str):
        """Embed time step t of `blocks` as absolute block `index`: tokens [B,Lb,d], layout, rows, cols, key_ok."""
        game, present = blocks.game, blocks.present
        b, n = present.shape
        rows, cols = blocks.codes.shape[-2:]
        device = game.device
        layout = block_layout(index, rows, cols, n, device, parts)
        tokens = Tokens(n, rows * cols)
        xs, rr, cc, ok = [], [], [], []
        slots = self.slot_emb.weight[:n][None]
        cell = blocks.cells[:, t]
        start = 0  # where the part begins in the block
        for part in parts:
            if part == "G":
                xs.append((self.game_emb(game) + self.kind_emb.weight[GAME])[:, None])
                zero = torch.zeros(b, 1, dtype=torch.long, device=device)
                rr.append(zero); cc.append(zero); ok.append(torch.ones(b, 1, dtype=torch.bool, device=device))
            elif part == "F":
                codes = blocks.codes[:, t].reshape(b, rows * cols)
                x = self.code_emb(codes) + self.kind_emb.weight[FRAME]
                xs.append(x + self.occupancy(blocks, t, cols) if self.cfg.frame_occupancy else x)
                frame = slice(start, start + rows * cols)  # a slice, not a boolean index: no read-back to the host
                rr.append(layout.row[frame].expand(b, -1))
                cc.append(layout.col[frame].expand(b, -1))
                ok.append(torch.ones(b, rows * cols, dtype=torch.bool, device=device))
            else:
                if part == "P":
                    x = slots + self.facing_emb(blocks.facing[:, t]) + self.alive_emb(blocks.alive[:, t].long())
                    x = x + self.kind_emb.weight[POSE]
                else:
                    x = slots + self.action_emb(blocks.actions[:, t]) + self.kind_emb.weight[ACTION]
                xs.append(x); ok.append(present)
                if self.cfg.spatial_rope:
                    rr.append(cell[..., 0]); cc.append(cell[..., 1])
                else:  # the ablation: every subject token at cell (0, 0), so only time rotates it
                    rr.append(torch.zeros_like(cell[..., 0])); cc.append(torch.zeros_like(cell[..., 1]))
            start += tokens.size(part)
        return torch.cat(xs, 1), layout, torch.cat(rr, 1), torch.cat(cc, 1), torch.cat(ok, 1)

    def occupancy(self, blocks: Blocks, t: int, cols: int) -> torch.Tensor:
        """[B, R*C, d]: each live player's (slot, facing) embedding on the frame token of its cell. The
        frame tokens see the block's pose tokens anyway; this hands them who stands where directly, so the
        frame is drawn at the poses (a sprite per pose) instead of being found through attention."""
        cell, facing = blocks.cells[:, t], blocks.facing[:, t]
        b, n = facing.shape
        live = (blocks.alive[:, t] & blocks.present).unsqueeze(-1)
        slot = torch.arange(n, device=facing.device)
        emb = self.occupant_emb(slot * 4 + facing) * live
        index = (cell[..., 0] * cols + cell[..., 1]).unsqueeze(-1).expand_as(emb)
        grid = torch.zeros(b, blocks.codes.shape[-2] * cols, emb.shape[-1], dtype=emb.dtype, device=emb.device)
        return grid.scatter_add_(1, index, emb)

    # ---- transformer -----------------------------------------------------------------------------
    def run(self, x: torch.Tensor, layout: Layout, rows: torch.Tensor, cols: torch.Tensor,
            key_ok: torch.Tensor | None, cache: KVCache | None = None,
            compiled: bool = False) -> tuple[torch.Tensor, list]:
        """Transformer over new tokens x [B,L,d] laid out as `layout` (after `cache`'s keys); `key_ok` [B,L]
        marks the tokens other tokens may see (None: all, the common case, which keeps the mask one
        [Lq, Lk] for every world). `compiled`: run the layers through `compiled_layers`. Returns hidden
        [B,L,d] and per layer (keys before and after RoPE, values)."""
        cos, sin = self.rope.angles(layout.block.expand_as(rows), rows, cols)
        cos, sin = cos[:, None], sin[:, None]
        held = cache is not None and cache.blocks > 0
        key_pieces = cache.layout.pieces + layout.pieces if held else layout.pieces
        dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
        # The frame rows (if any) attend unmasked (attention.attend): the mask holds the other rows.
        frame = frame_rows(layout.shape, layout.pieces, key_pieces, self.cfg.subject_isolation)
        mask = rows_bias(layout.shape, layout.pieces, key_pieces, self.cfg.subject_isolation, dtype,
                         x.device)[None, None]
        frame_mask = None
        cached_ok = cache.key_ok if held else None
        if key_ok is not None or cached_ok is not None:  # padded players or reset worlds: a mask per world
            every = functools.partial(torch.ones, x.shape[0], dtype=torch.bool, device=x.device)
            ok = [key_ok if key_ok is not None else every(len(layout))]
            if held:
                ok.insert(0, cached_ok if cached_ok is not None else every(len(cache.layout)))
            hidden = ~torch.cat(ok, 1)[:, None, None, :]
            mask = mask.masked_fill(hidden, float("-inf"))
            if frame is not None:
                frame_mask = torch.zeros(hidden[..., :frame.keys].shape, dtype=mask.dtype,
                                         device=x.device).masked_fill_(hidden[..., :frame.keys], float("-inf"))
        new_kv = []
        graphs = torch._dynamo.config.patch(recompile_limit=COMPILED_GRAPHS) if compiled else contextlib.nullcontext()
        with graphs:
            for i, layer in enumerate(self.compiled_layers() if compiled else self.layers):
                cached = (cache.k[i], cache.v[i], cache.held()) if held else (None, None, 0)
                x, kv = layer(x, cos, sin, mask, *cached, frame, frame_mask)
                new_kv.append(kv)
        return self.norm(x), new_kv

    def compiled_layers(self) -> list[nn.Module]:
        """The layers through `torch.compile` (same weights; the model itself is left as it is, so other users
        of it run eagerly). Inductor fuses each layer's norms, RoPE, residual adds and GELU, the elementwise
        kernels that, not the matmuls, take most of a batched GPU step (benchmarks/results/step_profile_*).
        The layers share one compiled code object; a new pass shape recompiles at first, then shapes go dynamic
        (up to COMPILED_GRAPHS graphs, which `run` allows)."""
        if self._compiled_layers is None:
            self._compiled_layers = [torch.compile(layer) for layer in self.layers]
        return self._compiled_layers

    def forward(self, blocks: Blocks) -> dict[str, torch.Tensor]:
        """Training pass over T blocks (all parts). Returns logits and head outputs per block."""
        t_len = blocks.codes.shape[1]
        pieces = [self.embed_block(blocks, t, t, ORDER) for t in range(t_len)]
        x = torch.cat([p[0] for p in pieces], 1)
        layout = pieces[0][1]
        for p in pieces[1:]:
            layout = layout.cat(p[1])
        rows, cols, ok = (torch.cat([p[i] for p in pieces], 1) for i in (2, 3, 4))
        h, _ = self.run(x, layout, rows, cols, None if bool(ok.all()) else ok)  # a mask per world only for padding
        part = self.tokens(blocks).split(h)
        return {**self.frame_heads(part["F"]), **self.player_heads(part["A"], part["F"])}

    def tokens(self, blocks: Blocks) -> Tokens:
        return Tokens(blocks.present.shape[1], blocks.codes.shape[-2] * blocks.codes.shape[-1])

    def frame_heads(self, h_frame: torch.Tensor) -> dict[str, torch.Tensor]:
        """h_frame [..., RC, d] of the frame being drawn -> code logits [..., RC, V] (and change logits)."""
        out = {"code_logits": self.code_head(h_frame)}
        if self.cfg.change_head:
            out["change_logit"] = self.change_head(h_frame).squeeze(-1)
        return out

    def player_heads(self, h_action: torch.Tensor, h_frame: torch.Tensor) -> dict[str, torch.Tensor]:
        """h_action [..., N, d] and h_frame [..., RC, d] of the same blocks -> each player's next state."""
        q, k = self.ptr_q(h_action), self.ptr_k(h_frame)
        out = {"cell_logits": q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5,  # [..., N, RC]
               "facing_logits": self.facing_head(h_action),
               "alive_logit": self.alive_head(h_action).squeeze(-1)}
        if self.cfg.reward_bins:
            out["reward_logits"] = self.reward_head(h_action)
        else:
            out["reward"] = self.reward_head(h_action).squeeze(-1)
        if self.cfg.move_head:
            out["move_logits"] = self.move_head(h_action)
        return out

    def game_index(self, name: str) -> int:
        if name not in self.games:
            raise ValueError(f"this checkpoint does not know the substrate {name!r}; it knows: {', '.join(self.games)}")
        return self.games.index(name)

    def codebook(self) -> Codebook:
        if self._codebook is None:
            self._codebook = Codebook(self.patches.cpu().numpy())
        return self._codebook

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
