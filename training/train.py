"""Train the world model. One process or many, launched with torchrun (DDP):

    torchrun --standalone --nproc_per_node=1 -m training.train --config training/configs/h100.yaml
    python -m training.train --config training/configs/tiny.yaml --set data=/path/to/lmdb out=runs/x

The run resumes by itself from `<out>/train_state.pt` (kill it any time), logs to TensorBoard and
`<out>/metrics.jsonl`, writes validation losses and sample rollouts (real | dream GIFs), and exports
the EMA weights as a checkpoint folder `<out>/export` (the format the env loads).

Objective (diffusion forcing over code frames): every frame of a clip is masked at its own random
rate (some stay clean, as context is at inference) and a small share of the unmasked context codes is
replaced by random codes of the same game, so the model learns to trust, and to repair, its own
imperfect context. Cross-entropy on the masked codes (cells that changed since the previous frame
weigh more: they carry the dynamics), plus the action tokens' heads: next cell (pointer), facing,
alive, reward. Rollout batches (self-forcing) replace the real context by the model's own closed-loop
rollout under the recorded actions, so states and frames are trained on what the model will see.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader
from tqdm import tqdm

from actionparty_env.grid import JUMP, PlayerStates, move_class
from actionparty_env.model.checkpoint import load_world_model, save_checkpoint
from actionparty_env.model.network import Blocks, ModelConfig, WorldModel
from actionparty_env.model.sampler import DreamSimulator
from training.clips import BucketBatchSampler, ClipDataset, collate_clips
from training.tables import Tables, build_tables, grow_codebook, install_tables


@dataclass
class TrainConfig:
    data: str = "data/mp"
    out: str = "runs/default"
    init_from: str | None = None      # a checkpoint folder to continue from (weights only)
    model: dict = field(default_factory=dict)  # ModelConfig overrides (dim, depth, heads, window, ...)
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 0.05
    warmup_steps: int = 500
    max_steps: int = 20000
    max_minutes: float = 0.0          # stop (and export) after this wall time; 0 = no limit
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    clean_context_prob: float = 0.25  # share of frames left unmasked (clean context)
    full_mask_prob: float = 0.0       # share of clips whose last frame is fully masked (the dream's case)
    corrupt_max: float = 0.02         # up to this share of context codes replaced by random codes
    changed_weight: float = 4.0       # extra weight of cells that changed since the previous frame
    rollout_prob: float = 0.0         # share of batches whose context is the model's own rollout
    rollout_after: float = 0.5        # ... from this fraction of max_steps on
    rollout_sampling_steps: int = 1
    workers: int = 4
    eval_every: int = 1000
    eval_batches: int = 20
    ckpt_every: int = 500
    log_every: int = 50
    sample_gifs: int = 2
    seed: int = 0
    compile: bool = False

    @classmethod
    def from_args(cls, argv=None) -> "TrainConfig":
        p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
        p.add_argument("--config", help="YAML file of TrainConfig fields")
        p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override fields (YAML values)")
        args = p.parse_args(argv)
        values = yaml.safe_load(Path(args.config).read_text()) if args.config else {}
        for item in args.set:
            key, _, value = item.partition("=")
            target, *sub = key.split(".")
            if sub:
                values.setdefault(target, {})[sub[0]] = yaml.safe_load(value)
            else:
                values[key] = yaml.safe_load(value)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {', '.join(sorted(unknown))}")
        for f in dataclasses.fields(cls):  # YAML 1.1 reads 1e-3 (no dot) as a string
            kind = type(f.default)
            if isinstance(values.get(f.name), str) and kind in (int, float):
                try:
                    values[f.name] = kind(values[f.name])
                except ValueError:
                    raise ValueError(f"TrainConfig.{f.name} must be of type {kind.__name__}, got {values[f.name]!r}") from None
        return cls(**values)


# ---- the objective ---------------------------------------------------------------------------------
def to_blocks(batch: dict, action_ids: torch.Tensor, game_map: torch.Tensor, device) -> tuple[Blocks, torch.Tensor]:
    """A collated clip batch -> model inputs (codes unmasked) and the rewards [B,L,N]."""
    game = game_map[batch["game"].to(device)]
    local = batch["actions"].to(device).long().clamp(min=0)
    # The clip's player states, built once here (the collated batch is a dict of tensors). Dead players
    # keep a meaningless POSITION (MELTINGPOT.md): keep it inside the map.
    clip = PlayerStates(batch["cells"], batch["facing"], batch["alive"]).to(device)
    last = torch.tensor(batch["codes"].shape[-2:], device=device) - 1  # the map's last (row, col)
    players = PlayerStates(torch.minimum(clip.cells.clamp(min=0), last), clip.facing.clamp(0, 3), clip.alive)
    blocks = Blocks(
        game=game,
        codes=batch["codes"].to(device).long(),
        players=players,
        actions=action_ids[game][:, None, None, :].expand(-1, *local.shape[1:], -1).gather(-1, local[..., None]).squeeze(-1),
        present=batch["present"].to(device).bool(),
    )
    return blocks, batch["rewards"].to(device).float()


def mask_frames(blocks: Blocks, game_codes: torch.Tensor, cfg: TrainConfig, gen: torch.Generator,
                mask_code: int) -> tuple[Blocks, torch.Tensor]:
    """Diffusion-forcing corruption: returns the masked inputs and the bool [B,L,R,C] of masked cells."""
    codes = blocks.codes
    b, t_len = codes.shape[:2]
    dev = codes.device
    rate = torch.rand(b, t_len, 1, 1, generator=gen, device=dev)
    rate = torch.where(torch.rand(b, t_len, 1, 1, generator=gen, device=dev) < cfg.clean_context_prob, 0.0, rate)
    # The dream draws each new frame from nothing in one pass; a uniform rate rarely trains that case.
    full = torch.rand(b, 1, 1, generator=gen, device=dev) < cfg.full_mask_prob
    rate[:, -1] = torch.where(full, 1.0, rate[:, -1])
    masked = torch.rand(codes.shape, generator=gen, device=dev) < rate
    # Replace a few visible context codes by random codes of the same game (model-like errors).
    allowed = game_codes[blocks.game].float()  # [B, V]
    random_codes = torch.multinomial(allowed, codes[0].numel(), replacement=True, generator=gen).view_as(codes)
    corrupt_rate = torch.rand(b, t_len, 1, 1, generator=gen, device=dev) * cfg.corrupt_max
    corrupt = (torch.rand(codes.shape, generator=gen, device=dev) < corrupt_rate) & ~masked
    inputs = torch.where(masked, mask_code, torch.where(corrupt, random_codes, codes))
    return dataclasses.replace(blocks, codes=inputs), masked


def two_hot(values: torch.Tensor, support: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Target distributions [..., K] over each game's sorted reward support ([..., K], `valid` its real
    bins): all mass on a bin the value equals, else split between its two neighbours so that the
    expectation is the value (values outside the support go to its end)."""
    k = valid.sum(-1, keepdim=True)  # real bins come first
    idx = torch.searchsorted(support.contiguous(), values[..., None].contiguous()).clamp(max=k - 1)  # first >= v
    hi = support.gather(-1, idx)
    lo_idx = (idx - 1).clamp(min=0)
    lo = support.gather(-1, lo_idx)
    w_hi = torch.where(hi > lo, ((values[..., None] - lo) / (hi - lo).clamp(min=1e-12)).clamp(0, 1), torch.ones_like(hi))
    target = torch.zeros_like(support)
    target.scatter_add_(-1, lo_idx, 1 - w_hi)
    return target.scatter_add_(-1, idx, w_hi)


def losses(out: dict, model: WorldModel, target: Blocks, rewards: torch.Tensor, masked: torch.Tensor,
           changed_weight: float) -> dict[str, torch.Tensor]:
    """All terms of the objective for `model`'s heads (targets from `target`, the clean clip)."""
    cfg = model.cfg
    b, t_len, r, c = target.codes.shape
    logits = out["code_logits"].float()  # [B,L,RC,V]
    codes = target.codes.view(b, t_len, r * c)
    m = masked.view(b, t_len, r * c).float()
    changed = torch.zeros_like(m)
    changed[:, 1:] = (codes[:, 1:] != codes[:, :-1]).float()
    w = m * (1 + changed_weight * changed)
    ce = F.cross_entropy(logits.flatten(0, 2), codes.flatten(), reduction="none").view_as(m)
    terms = {"code": (ce * w).sum() / w.sum().clamp(min=1)}
    if cfg.change_head:  # on masked cells of frames that have a previous frame; real changes only
        bce = F.binary_cross_entropy_with_logits(out["change_logit"][:, 1:].float(), changed[:, 1:], reduction="none",
                                                 pos_weight=torch.tensor(cfg.change_weight, device=m.device))
        terms["change"] = (bce * m[:, 1:]).sum() / m[:, 1:].sum().clamp(min=1)
    # Heads: action token of block t predicts the state of block t+1.
    present = target.present[:, None, :].expand(-1, t_len - 1, -1)
    alive_now, alive_next = target.alive[:, :-1] & present, target.alive[:, 1:] & present
    cell_next = target.cells[:, 1:, :, 0] * c + target.cells[:, 1:, :, 1]
    cell_ce = F.cross_entropy(out["cell_logits"][:, :-1].float().flatten(0, 2), cell_next.flatten(), reduction="none")
    face_ce = F.cross_entropy(out["facing_logits"][:, :-1].float().flatten(0, 2), target.facing[:, 1:].flatten(),
                              reduction="none")
    flip = (alive_now != alive_next).float()
    alive_bce = F.binary_cross_entropy_with_logits(out["alive_logit"][:, :-1].float(), alive_next.float(), reduction="none")
    alive_w = present.float() * (1 + (cfg.alive_flip_weight - 1) * flip)
    pf, lv = present.float(), alive_next.float().flatten()
    n_live, n_present = lv.sum().clamp(min=1), pf.sum().clamp(min=1)
    terms["facing"] = (face_ce * lv).sum() / n_live
    terms["alive"] = (alive_bce * alive_w).sum() / n_present
    if cfg.move_head:  # walkers learn their move; the pointer learns respawns and teleports
        torus = model.game_torus[target.game][:, None, None]
        move = move_class(target.cells[:, :-1], target.facing[:, :-1], target.cells[:, 1:], r, c, torus)
        walks = (alive_now & alive_next).float()
        jumps = (alive_next & (~alive_now | (move == JUMP))).float().flatten()
        move_ce = F.cross_entropy(out["move_logits"][:, :-1].float().flatten(0, 2), move.flatten(), reduction="none")
        terms["move"] = (move_ce * walks.flatten()).sum() / walks.sum().clamp(min=1)
        terms["cell"] = (cell_ce * jumps).sum() / jumps.sum().clamp(min=1)
        with torch.no_grad():
            terms["move_acc"] = ((out["move_logits"][:, :-1].argmax(-1) == move).float() * walks).sum() / walks.sum().clamp(min=1)
    else:
        terms["cell"] = (cell_ce * lv).sum() / n_live
        with torch.no_grad():
            terms["cell_acc"] = ((out["cell_logits"][:, :-1].argmax(-1).flatten() == cell_next.flatten()).float() * lv).sum() / n_live
    if cfg.reward_bins:
        support = model.reward_support[target.game][:, None, None].expand(-1, t_len - 1, present.shape[-1], -1)
        valid = model.reward_valid[target.game][:, None, None].expand_as(support)
        goal = two_hot(rewards[:, :-1], support, valid)
        logp = out["reward_logits"][:, :-1].float().masked_fill(~valid, float("-inf")).log_softmax(-1)
        rew = -(goal * logp.masked_fill(~valid, 0.0)).sum(-1)
    else:
        rew = (out["reward"][:, :-1].float() - rewards[:, :-1]) ** 2
    terms["reward"] = (rew * pf).sum() / n_present
    with torch.no_grad():
        terms["code_acc_changed"] = ((logits.argmax(-1) == codes).float() * m * changed).sum() / (m * changed).sum().clamp(min=1)
    terms["loss"] = sum(terms[k] for k in ("code", "change", "cell", "move", "facing", "alive", "reward") if k in terms)
    return terms


@torch.no_grad()
def rollout_context(model: WorldModel, blocks: Blocks, sampling_steps: int, generator) -> Blocks:
    """Self-forcing context: frames 1..L-2 and poses 1..L-2 of each clip become the model's own
    closed-loop rollout from frame 0 under the recorded actions. The last block (the target frame
    and the poses it is drawn at) stays real."""
    b, t_len = blocks.codes.shape[:2]
    codes = blocks.codes.clone()
    players = PlayerStates(blocks.cells.clone(), blocks.facing.clone(), blocks.alive.clone())  # written in place
    for g in blocks.game.unique().tolist():
        rows = (blocks.game == g).nonzero().squeeze(1)
        sim = DreamSimulator(model, g, blocks.present.shape[1], len(rows), blocks.codes.device,
                             sampling_steps=sampling_steps)
        sim.generator = generator
        sim.reset_codes(codes[rows, 0], players[rows, 0], present=blocks.present[rows])
        for t in range(1, t_len - 1):
            sim.advance(blocks.actions[rows, t - 1])
            p = sim.players
            codes[rows, t] = sim.codes
            players.cells[rows, t], players.facing[rows, t], players.alive[rows, t] = p.cells, p.facing, p.alive
    return dataclasses.replace(blocks, codes=codes, players=players)


# ---- the loop --------------------------------------------------------------------------------------
def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


class Batches:
    """An endless, resumable stream of this rank's batches: epoch e is BucketBatchSampler's epoch e."""

    def __init__(self, dataset, cfg: TrainConfig, rank: int, world: int):
        self.sampler = BucketBatchSampler(dataset, cfg.batch_size, seed=cfg.seed, shuffle=True, drop_last=True,
                                          num_replicas=world, rank=rank)

    def from_step(self, step: int):
        self.sampler.set_epoch(0)
        per_epoch = len(self.sampler)
        if per_epoch == 0:
            raise ValueError("the training split has fewer full batches than ranks")
        epoch, skip = divmod(step, per_epoch)
        while True:
            self.sampler.set_epoch(epoch)
            yield from list(self.sampler)[skip:]
            epoch, skip = epoch + 1, 0


def setup_distributed():
    if "RANK" not in os.environ:
        return 0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu")
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def shared_tables(cfg: TrainConfig, out: Path, rank: int, world: int) -> Tables:
    """The data's tables, built once by rank 0 and shared through `out` (a resumed run reads them back)."""
    tables_path = out / "tables.pt"
    max_actions = ModelConfig.__dataclass_fields__["max_actions"].default
    if rank == 0 and not tables_path.exists():
        tables = build_tables(cfg.data, cfg.model.get("max_actions", max_actions), cfg.model.get("reward_bins", 0),
                              workers=cfg.workers)
        torch.save(tables, tables_path.with_suffix(".tmp"))
        os.replace(tables_path.with_suffix(".tmp"), tables_path)
    if world > 1:
        dist.barrier()
    return torch.load(tables_path, weights_only=False)


def build_model(cfg: TrainConfig, out: Path, rank: int, world: int) -> WorldModel:
    """A fresh model with its tables, or one to continue (`init_from`), its codebook grown by the patches
    of the data it lacks (new sprites, a game state its episodes never reached): without them such a
    patch would be encoded as its nearest code and the model could never draw it."""
    tables = shared_tables(cfg, out, rank, world)
    if cfg.init_from:
        model, added = grow_codebook(load_world_model(cfg.init_from), tables)
        if rank == 0:
            print(f"{cfg.init_from}: {added} codes of the data added to its codebook ({model.cfg.vocab_size} now)")
        return model
    mcfg = ModelConfig(vocab_size=len(tables.codebook), num_games=len(tables.games),
                       num_action_names=len(tables.action_vocab), **cfg.model)
    model = WorldModel(mcfg, tables.games, tables.action_vocab)
    install_tables(model, tables)
    return model


def weight_digests(model: WorldModel, world: int) -> list[str]:
    """SHA-256 of every rank's weights (state_dict order): DDP keeps the replicas equal; this proves it."""
    digest = hashlib.sha256()
    for v in model.state_dict().values():
        digest.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    if world == 1:
        return [digest.hexdigest()]
    digests = [None] * world
    dist.all_gather_object(digests, digest.hexdigest())
    return digests


def save_state(path: Path, **state) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: a kill never leaves half a checkpoint


@torch.no_grad()
def validation_losses(model: WorldModel, loader_iter, game_map, cfg: TrainConfig, device, autocast) -> dict[str, float]:
    """The objective's terms (as "val/<term>"), averaged over `cfg.eval_batches` batches of `loader_iter`
    with a fixed masking seed, so successive evaluations of one run are comparable."""
    model.eval()
    gen = torch.Generator(device=device).manual_seed(1234)
    sums: dict[str, float] = {}
    n = 0
    for batch in itertools.islice(loader_iter, cfg.eval_batches):
        blocks, rewards = to_blocks(batch, model.action_ids, game_map, device)
        inputs, masked = mask_frames(blocks, model.game_codes, cfg, gen, model.mask_code)
        with autocast:
            terms = losses(model(inputs), model, blocks, rewards, masked, cfg.changed_weight)
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + float(v)
        n += 1
    model.train()
    return {f"val/{k}": v / max(n, 1) for k, v in sums.items()}


def main(argv=None) -> None:
    cfg = TrainConfig.from_args(argv)
    rank, world, device = setup_distributed()
    torch.manual_seed(cfg.seed + rank)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    model = build_model(cfg, out, rank, world).to(device)
    codebook = model.codebook()
    window = model.cfg.window
    train_set = ClipDataset(cfg.data, clip_len=window + 1, split="train", codebook=codebook)
    val_set = ClipDataset(cfg.data, clip_len=window + 1, split="val", codebook=codebook)
    # The dataset numbers games by its own catalog; the model by its own list.
    game_map = torch.tensor([model.games.index(g) if g in model.games else 0 for g in train_set.games], device=device)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "emb" in name else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95),
                            fused=device.type == "cuda")
    step = 0
    state_path = out / "train_state.pt"
    if state_path.exists():
        state = torch.load(state_path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
        if rank == 0:
            print(f"resumed from {state_path} at step {step}")
    ddp = DDP(model, device_ids=[device.index] if device.type == "cuda" else None) if world > 1 else model
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    forward = torch.compile(ddp, dynamic=True) if cfg.compile else ddp
    loader = DataLoader(train_set, batch_sampler=Batches(train_set, cfg, rank, world).from_step(step),
                        collate_fn=collate_clips, num_workers=cfg.workers, pin_memory=device.type == "cuda",
                        persistent_workers=False, prefetch_factor=4 if cfg.workers else None)
    val_loader = DataLoader(val_set, batch_sampler=BucketBatchSampler(val_set, cfg.batch_size, seed=0, shuffle=True,
                                                                         drop_last=False),
                            collate_fn=collate_clips, num_workers=min(2, cfg.workers))
    writer = None
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415 (optional, rank 0 only)
        writer = SummaryWriter(str(out / "tb"))
        print(f"model: {model.num_params() / 1e6:.1f}M parameters, codebook {len(codebook)} codes, "
              f"{len(model.games)} games, {len(train_set)} training clips, device {device}, {world} process(es)")
    metrics_file = open(out / "metrics.jsonl", "a") if rank == 0 else None
    t_start = time.time()
    tokens_seen = 0
    bar = tqdm(total=cfg.max_steps, initial=step, disable=rank != 0, desc="train")
    model.train()
    data_iter = iter(loader)
    t_log = time.time()
    stop = False
    while step < cfg.max_steps and not stop:
        batch = next(data_iter)
        gen = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + step * world + rank)
        blocks, rewards = to_blocks(batch, model.action_ids, game_map, device)
        target = blocks
        use_rollout = cfg.rollout_prob > 0 and step >= cfg.rollout_after * cfg.max_steps and \
            torch.rand((), generator=gen, device=device).item() < cfg.rollout_prob
        if use_rollout:
            model.eval()
            with autocast:
                blocks = rollout_context(model, blocks, cfg.rollout_sampling_steps, gen)
            model.train()
        for g in opt.param_groups:
            g["lr"] = cfg.lr * lr_at(step, cfg)
        inputs, masked = mask_frames(blocks, model.game_codes, cfg, gen, model.mask_code)
        with autocast:
            terms = losses(forward(inputs), model, target, rewards, masked, cfg.changed_weight)
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        ema.update_parameters(model)
        step += 1
        b, t_len, r, c = blocks.codes.shape
        tokens_seen += b * t_len * (r * c + 2 * blocks.present.shape[1] + 1) * world
        bar.update(1)
        if cfg.max_minutes and (time.time() - t_start) / 60 > cfg.max_minutes:
            stop = True
        if world > 1 and cfg.max_minutes:
            flag = torch.tensor(float(stop), device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)  # all ranks stop (and checkpoint) at the same step
            stop = bool(flag.item())
        if rank == 0 and (step % cfg.log_every == 0 or stop):
            elapsed = time.time() - t_log
            row = {k: float(v.detach()) for k, v in terms.items()}
            row.update(step=step, lr=opt.param_groups[0]["lr"], grad_norm=float(grad_norm),
                       tokens_per_s=tokens_seen / max(elapsed, 1e-9), minutes=(time.time() - t_start) / 60,
                       rollout=bool(use_rollout))
            tokens_seen, t_log = 0, time.time()
            for k, v in row.items():
                if isinstance(v, float):
                    writer.add_scalar(f"train/{k}", v, step)
            metrics_file.write(json.dumps(row) + "\n")
            metrics_file.flush()
            bar.set_postfix(loss=f"{row['loss']:.3f}", move=f"{row.get('move_acc', row.get('cell_acc', 0)):.3f}")
        if rank == 0 and (step % cfg.eval_every == 0 or stop or step == cfg.max_steps):
            val = validation_losses(ema.module, iter(val_loader), game_map, cfg, device, autocast)
            for k, v in val.items():
                writer.add_scalar(k, v, step)
            metrics_file.write(json.dumps({"step": step, **val}) + "\n")
            metrics_file.flush()
            write_samples(ema.module, cfg, out / "samples" / f"step{step:07d}", device)
        if step % cfg.ckpt_every == 0 or stop or step == cfg.max_steps:
            digests = weight_digests(model, world)
            if rank == 0:
                save_state(state_path, model=model.state_dict(), ema=ema.state_dict(), opt=opt.state_dict(),
                           step=step, config=dataclasses.asdict(cfg), weights_sha256=digests)
    bar.close()
    if rank == 0:
        summary = {"steps": step, "minutes": (time.time() - t_start) / 60, "train_config": dataclasses.asdict(cfg),
                   "data": {"path": cfg.data, "train_clips": len(train_set), "val_clips": len(val_set)}}
        save_checkpoint(ema.module, out / "export", extra={"training": summary})
        print(f"exported {out / 'export'} at step {step}")
    if dist.is_initialized():  # torchrun, one process or more
        # Rank 0 exports alone: the others wait for it, so none tears the group down under it (a rank that
        # left early aborted in CI: "terminate called without an active exception").
        dist.barrier()
        dist.destroy_process_group()


@torch.no_grad()
def write_samples(model: WorldModel, cfg: TrainConfig, prefix: Path, device) -> None:
    """Closed-loop rollouts of held-out episodes under their recorded actions: real | dream GIFs."""
    from training.rollout import rollout_gif  # noqa: PLC0415 (imageio only when sampling)

    prefix.parent.mkdir(parents=True, exist_ok=True)
    rollout_gif(model, cfg.data, prefix, count=cfg.sample_gifs, steps=30, device=device)


if __name__ == "__main__":
    main()
