"""The trainer (training/train.py) on a tiny dataset recorded from the real Melting Pot: the loss falls,
a run killed with SIGKILL resumes at its checkpoint's step and then repeats the uninterrupted run
bit for bit, and the objective's pieces (to_blocks, mask_frames, losses) do what they say."""
from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from actionparty_env.model.checkpoint import load_world_model
from tests.conftest import ROOT, TINY_SUBSTRATES as SUBSTRATES, subprocess_env
from training.clips import BucketBatchSampler, ClipDataset, collate_clips
from actionparty_env.grid import NUM_MOVES, move_class
from training.train import TrainConfig, losses, mask_frames, to_blocks, two_hot

STEPS = 60
# Logged every step, checkpointed every 10; no GIFs and one validation pass at the end (speed).
RUN_SETTINGS = [f"max_steps={STEPS}", "ckpt_every=10", "log_every=1", "eval_every=1000", "sample_gifs=0"]


def train_command(data: Path, out: Path, extra: tuple[str, ...] = ()) -> list[str]:
    return [sys.executable, "-m", "training.train", "--config", str(ROOT / "training/configs/tiny.yaml"),
            "--set", f"data={data}", f"out={out}", *RUN_SETTINGS, *extra]


def run_training(command: list[str]) -> str:
    proc = subprocess.run(command, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def train_losses(run: Path) -> dict[int, dict[str, float]]:
    """step -> logged training terms; a step logged twice (before a kill and after the resume) keeps
    its last row."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r for r in rows if "loss" in r}


def load_state(run: Path) -> dict:
    return torch.load(run / "train_state.pt", map_location="cpu", weights_only=False)


@pytest.fixture(scope="module")
def data(tiny_dataset) -> Path:
    return tiny_dataset


@pytest.fixture(scope="module")
def reference_run(data, tmp_path_factory) -> Path:
    """One uninterrupted 60-step run, shared by the loss test and the resume test."""
    out = tmp_path_factory.mktemp("reference_run")
    run_training(train_command(data, out))
    return out


@pytest.mark.slow  # a 60-step training run on recorded episodes
def test_loss_falls_on_a_tiny_recorded_dataset(reference_run):
    rows = train_losses(reference_run)
    assert sorted(rows) == list(range(1, STEPS + 1))
    # Means over 15 steps each: batches alternate between the two map sizes, whose losses differ.
    early = {k: np.mean([rows[s][k] for s in range(1, 16)]) for k in ("loss", "code", "alive")}
    late = {k: np.mean([rows[s][k] for s in range(STEPS - 14, STEPS + 1)]) for k in ("loss", "code", "alive")}
    assert late["loss"] < 0.85 * early["loss"], (early, late)  # measured: 9.7 -> 7.2
    assert late["code"] < 0.9 * early["code"], (early, late)
    assert late["alive"] < early["alive"], (early, late)
    assert all(np.isfinite(r["loss"]) and np.isfinite(r["grad_norm"]) for r in rows.values())
    val = [json.loads(line) for line in (reference_run / "metrics.jsonl").read_text().splitlines()
           if "val/loss" in line]
    assert len(val) == 1 and val[0]["step"] == STEPS and np.isfinite(val[0]["val/loss"])
    # The export is a checkpoint the env loads.
    model = load_world_model(reference_run / "export")
    assert model.cfg.dim == 32 and "coins" in model.games


@pytest.mark.slow  # a 60-step training run on recorded episodes
def test_killed_run_resumes_at_its_step_and_repeats_the_uninterrupted_run(data, reference_run, tmp_path):
    out = tmp_path / "killed"
    state_path = out / "train_state.pt"
    proc = subprocess.Popen(train_command(data, out), cwd=ROOT, env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not state_path.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)  # no clean-up at all
    finally:
        proc.kill()
        proc.wait()
    killed_at = load_state(out)["step"]
    assert 10 <= killed_at < STEPS and killed_at % 10 == 0
    assert not (out / "export").exists(), "the killed run got to the end"

    log = run_training(train_command(data, out))
    assert f"resumed from {state_path} at step {killed_at}" in log
    resumed, reference = train_losses(out), train_losses(reference_run)
    assert sorted(resumed) == list(range(1, STEPS + 1))
    for step in range(1, STEPS + 1):  # steps before the kill, and every step after the resume
        assert resumed[step]["loss"] == reference[step]["loss"], step
    final, expected = load_state(out), load_state(reference_run)
    assert final["step"] == STEPS
    assert final["weights_sha256"] == expected["weights_sha256"]
    for name in ("model", "ema"):
        for key, value in expected[name].items():
            assert torch.equal(final[name][key], value), f"{name}.{key}"


# ---- the objective's pieces, on real clips --------------------------------------------------------------
@pytest.fixture(scope="module")
def batch(data, reference_run):
    model = load_world_model(reference_run / "export")
    clips = ClipDataset(str(data), clip_len=model.cfg.window + 1, split="train", codebook=model.codebook())
    sampler = BucketBatchSampler(clips, 4, seed=0, shuffle=True, drop_last=True)
    game_map = torch.tensor([model.games.index(g) for g in clips.games])
    raw = collate_clips([clips[i] for i in next(iter(sampler))])
    return model, raw, game_map


@pytest.mark.slow  # a 60-step training run on recorded episodes
def test_to_blocks_maps_games_and_actions_and_keeps_cells_on_the_map(batch):
    model, raw, game_map = batch
    raw = {k: v.clone() for k, v in raw.items()}
    raw["cells"][0, 0, 0] = torch.tensor([999, -5])  # a dead player's meaningless POSITION
    blocks, rewards = to_blocks(raw, model.action_ids, game_map, "cpu")
    rows, cols = raw["codes"].shape[-2:]
    assert torch.equal(blocks.game, game_map[raw["game"]])
    assert blocks.cells[0, 0, 0].tolist() == [rows - 1, 0]
    assert (blocks.cells[..., 0] < rows).all() and (blocks.cells[..., 1] < cols).all() and (blocks.cells >= 0).all()
    # Game-local action k of game g becomes the shared action-name id action_ids[g, k].
    expected = model.action_ids[blocks.game][:, None, None, :].expand(*raw["actions"].shape, -1)
    assert torch.equal(blocks.actions, expected.gather(-1, raw["actions"][..., None]).squeeze(-1))
    assert (blocks.actions[raw["actions"] == 0] == model.action_vocab.index("NOOP")).all()  # action 0 is NOOP
    assert rewards.dtype == torch.float32 and rewards.shape == raw["rewards"].shape


@pytest.mark.slow  # a 60-step training run on recorded episodes
def test_mask_frames_masks_and_corrupts_only_what_it_reports(batch):
    model, raw, game_map = batch
    blocks, _ = to_blocks(raw, model.action_ids, game_map, "cpu")
    cfg = dataclasses.replace(TrainConfig(), corrupt_max=0.5)
    inputs, masked = mask_frames(blocks, model.game_codes, cfg, torch.Generator().manual_seed(7), model.mask_code)
    again, masked_again = mask_frames(blocks, model.game_codes, cfg, torch.Generator().manual_seed(7),
                                      model.mask_code)
    assert torch.equal(inputs.codes, again.codes) and torch.equal(masked, masked_again)  # seeded
    assert torch.equal(inputs.codes == model.mask_code, masked)
    assert 0 < masked.float().mean() < 1
    changed = ~masked & (inputs.codes != blocks.codes)
    assert changed.any(), "no context code was corrupted at corrupt_max=0.5"
    allowed = model.game_codes[blocks.game]  # [B, V]: the replacement codes belong to the clip's game
    for b in range(len(blocks.game)):
        assert allowed[b, inputs.codes[b][changed[b]]].all()
    for f in ("cells", "facing", "alive", "actions", "present", "game"):
        assert torch.equal(getattr(inputs, f), getattr(blocks, f))
    clean_cfg = dataclasses.replace(cfg, clean_context_prob=1.0, corrupt_max=0.0)
    clean, none_masked = mask_frames(blocks, model.game_codes, clean_cfg, torch.Generator(), model.mask_code)
    assert not none_masked.any() and torch.equal(clean.codes, blocks.codes)
    last_cfg = dataclasses.replace(clean_cfg, full_mask_prob=1.0)
    _, last_masked = mask_frames(blocks, model.game_codes, last_cfg, torch.Generator(), model.mask_code)
    assert last_masked[:, -1].all() and not last_masked[:, :-1].any()  # the newest frame from nothing


def perfect_outputs(model, target, rewards, big: float = 50.0) -> dict[str, torch.Tensor]:
    """Head outputs that predict the clean clip exactly (block t's heads predict block t+1)."""
    b, t_len, r, c = target.codes.shape
    one_hot = torch.nn.functional.one_hot
    cell_next = target.cells[..., 0] * c + target.cells[..., 1]
    codes = target.codes.view(b, t_len, r * c)
    changed = torch.zeros(b, t_len, r * c)
    changed[:, 1:] = (codes[:, 1:] != codes[:, :-1]).float()
    torus = model.game_torus[target.game][:, None, None]
    move = move_class(target.cells, target.facing, target.cells.roll(-1, 1), r, c, torus)
    support = model.reward_support[target.game][:, None, None].expand(-1, t_len, rewards.shape[-1], -1)
    valid = model.reward_valid[target.game][:, None, None].expand_as(support)
    goal = two_hot(rewards, support, valid)
    return {"code_logits": one_hot(codes, model.cfg.vocab_size) * big,
            "change_logit": (changed * 2 - 1) * big,
            "cell_logits": one_hot(cell_next.roll(-1, 1), r * c) * big,
            "move_logits": one_hot(move, NUM_MOVES) * big,
            "facing_logits": one_hot(target.facing.roll(-1, 1), 4) * big,
            "alive_logit": (target.alive.roll(-1, 1).float() * 2 - 1) * big,
            "reward_logits": goal.clamp(min=1e-30).log()}


@pytest.mark.slow  # a 60-step training run on recorded episodes
def test_losses_vanish_for_perfect_predictions_and_weigh_the_right_cells(batch):
    model, raw, game_map = batch
    assert model.cfg.reward_bins and model.cfg.move_head and model.cfg.change_head  # the recipe's heads
    target, rewards = to_blocks(raw, model.action_ids, game_map, "cpu")
    b, t_len, r, c = target.codes.shape
    n = target.present.shape[1]
    out = perfect_outputs(model, target, rewards)
    masked = torch.ones(b, t_len, r, c, dtype=torch.bool)
    terms = losses(out, model, target, rewards, masked, changed_weight=4.0)
    for k in ("code", "change", "cell", "move", "facing", "alive", "reward"):  # coins and cooking pay exact values
        assert terms[k] < 1e-6, k
    assert terms["move_acc"] == 1
    # A wrong code on a cell that is not masked costs nothing; on a masked cell it does.
    wrong = {**out, "code_logits": out["code_logits"].clone()}
    wrong["code_logits"][0, 1, 0] = wrong["code_logits"][0, 1, 0].roll(1)
    unmasked = masked.clone()
    unmasked[0, 1, 0, 0] = False
    assert losses(wrong, model, target, rewards, unmasked, 4.0)["code"] < 1e-6
    assert losses(wrong, model, target, rewards, masked, 4.0)["code"] > 1e-3
    # Dead or padded players' heads are not scored (their POSITION is meaningless).
    nobody = dataclasses.replace(target.players, alive=torch.zeros_like(target.alive))
    dead = dataclasses.replace(target, players=nobody)
    noisy = {**out, "cell_logits": torch.randn(b, t_len, n, r * c), "move_logits": torch.randn(b, t_len, n, NUM_MOVES)}
    dead_terms = losses(noisy, model, dead, rewards, masked, 4.0)
    assert dead_terms["cell"] == 0 and dead_terms["move"] == 0
    # A cell that changed since the previous frame weighs 1 + changed_weight: with the changed cells of
    # one block predicted uniformly (cross-entropy log V) and the rest perfectly, the loss is their
    # weighted share.
    changed = target.codes[:, 1:] != target.codes[:, :-1]
    share = changed.flatten(2).float().mean(-1)
    bi, ti = ((share > 0) & (share < 1)).nonzero()[0].tolist()
    k, m = int(changed[bi, ti].sum()), r * c
    err = {**out, "code_logits": out["code_logits"].clone().float()}
    err["code_logits"][bi, ti + 1][changed[bi, ti].flatten()] = 0.0
    one_block = torch.zeros_like(masked)
    one_block[bi, ti + 1] = True
    for weight in (0.0, 4.0):
        expected = (1 + weight) * k * np.log(model.cfg.vocab_size) / ((1 + weight) * k + (m - k))
        got = losses(err, model, target, rewards, one_block, weight)["code"]
        assert abs(float(got) - expected) < 1e-3 * expected, (weight, float(got), expected)


def test_config_overrides_are_typed_and_bad_ones_named():
    cfg = TrainConfig.from_args(["--config", str(ROOT / "training/configs/tiny.yaml"), "--set", "lr=1e-3",
                                 "model.dim=16", "max_steps=7"])
    assert cfg.lr == 1e-3 and isinstance(cfg.lr, float) and cfg.model["dim"] == 16 and cfg.max_steps == 7
    with pytest.raises(ValueError, match="TrainConfig.lr must be of type float, got 'fast'"):
        TrainConfig.from_args(["--set", "lr=fast"])
    with pytest.raises(ValueError, match="unknown TrainConfig fields: learning_rate"):
        TrainConfig.from_args(["--set", "learning_rate=0.1"])


@pytest.mark.slow  # a 60-step training run on recorded episodes
def test_bundle_makes_a_loadable_checkpoint_with_start_states_sprite_and_transition_tables(data, reference_run,
                                                                                           tmp_path):
    from actionparty_env.model.checkpoint import load_world_model
    from training.bundle import main as bundle

    bundle(["--run", str(reference_run), "--data", str(data), "--out", str(tmp_path / "ck")])
    model = load_world_model(tmp_path / "ck")
    assert sorted(model.sprite_tables) == sorted(SUBSTRATES.split(","))
    assert all(len(t.codes) for t in model.sprite_tables.values())
    # Every change a training episode's cells make is in its game's transition table, and nothing else.
    from training.store import list_episodes, read_episode
    book, vocab = model.codebook(), model.cfg.vocab_size
    seen: dict[str, set] = {}
    for key in list_episodes(str(data), split="train"):
        ep = read_episode(str(data), key)
        codes = np.stack([book.encode(f) for f in ep.frames]).astype(np.int64)
        moved = codes[:-1] != codes[1:]
        seen.setdefault(ep.header["substrate"], set()).update((codes[:-1][moved] * vocab + codes[1:][moved]).tolist())
    assert {g: set(t.pairs.tolist()) for g, t in model.transition_tables.items()} == seen
    with np.load(tmp_path / "ck" / "start_states.npz") as starts:
        assert any(k.startswith("coins/0/") for k in starts.files)


@pytest.mark.slow  # a 60-step training run on recorded episodes
def test_grown_codebook_predicts_as_before_and_adds_each_new_patch_as_its_nearest_twin(batch, data):
    from actionparty_env.model.codebook import Codebook
    from training.tables import build_tables, grow_codebook

    model, raw, game_map = batch
    old, v = model.codebook(), model.cfg.vocab_size
    tables = build_tables(str(data), model.cfg.max_actions, model.cfg.reward_bins, workers=0)
    # Three patches the data never showed, each one pixel off a known patch (so that patch is its twin).
    twins = np.array([0, v // 2, v - 1])
    new = old.patches[twins].copy()
    new[:, 0, 0, 0] ^= 1
    book = Codebook.from_patch_sets([tables.codebook.patches.reshape(-1, 192), new.reshape(-1, 192)])
    coins = tables.games.index("coins")
    game_codes = np.zeros((len(tables.games), len(book)), bool)
    game_codes[:, book.lookup(tables.codebook.patches)] = tables.game_codes
    game_codes[coins, book.lookup(new)] = True  # coins drew them; cooking did not
    grown, added = grow_codebook(model, dataclasses.replace(tables, codebook=book, game_codes=game_codes))

    assert added == 3 and grown.cfg.vocab_size == v + 3 and grown.mask_code == v + 3
    assert np.array_equal(grown.codebook().patches[:v], old.patches)  # old codes keep their numbers
    assert np.array_equal(grown.codebook().lookup(new), v + np.arange(3)[np.argsort(np.argsort(book.lookup(new)))])
    new_codes = grown.codebook().lookup(new)
    assert grown.game_codes[model.games.index("coins"), new_codes].all()
    assert not grown.game_codes[model.games.index("collaborative_cooking__asymmetric"), new_codes].any()
    assert torch.equal(grown.game_codes[:, :v], model.game_codes)
    # On inputs of old codes (and the mask, now at its new number) the grown model says what the old one
    # did, and each new code gets its twin's logit.
    blocks, _ = to_blocks(raw, model.action_ids, game_map, "cpu")
    masked = blocks.codes.clone()
    masked[:, -1, ::2] = model.mask_code
    with torch.no_grad():
        before = model(dataclasses.replace(blocks, codes=masked))
        masked[masked == model.mask_code] = grown.mask_code
        after = grown(dataclasses.replace(blocks, codes=masked))
    torch.testing.assert_close(after["code_logits"][..., :v], before["code_logits"])
    order = np.argsort(book.lookup(new))  # the new codes in the order they were appended
    torch.testing.assert_close(after["code_logits"][..., v:], before["code_logits"][..., twins[order]])
    for key in ("move_logits", "facing_logits", "alive_logit", "reward_logits", "change_logit"):
        torch.testing.assert_close(after[key], before[key])
    assert grow_codebook(model, tables) == (model, 0)  # nothing new: the same model


def test_continuing_from_a_checkpoint_adds_the_codes_its_codebook_lacks(data, coins_checkpoint, tmp_path, capsys):
    from training.train import build_model

    old = load_world_model(coins_checkpoint)  # codes of the bundled coins start states only
    cfg = TrainConfig(data=str(data), out=str(tmp_path), init_from=str(coins_checkpoint), workers=0)
    model = build_model(cfg, tmp_path, rank=0, world=1)
    from training.store import list_episodes, read_episode

    frames = [f for key in list_episodes(str(data), split="train") for f in read_episode(str(data), key).frames]
    unknown = {}
    for name, book in (("old", old.codebook()), ("grown", model.codebook())):
        for f in frames:
            book.encode(f)
        unknown[name] = book.unknown_patches
    assert unknown["old"] > 0 and unknown["grown"] == 0  # every patch of the data now has its own code
    added = model.cfg.vocab_size - old.cfg.vocab_size
    assert added > 0 and f"{added} codes of the data added" in capsys.readouterr().out
