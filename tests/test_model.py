"""The world model on the CPU with a tiny configuration: shapes, subject isolation, sampling, checkpoints."""
import dataclasses

import numpy as np
import pytest
import torch

from actionparty_env.grid import PlayerStates
from actionparty_env.model.attention import (ACTION, ORDER, POSE, attend, attention_bias, block_layout, frame_rows,
                                             layout_of, rows_bias, visibility)
from actionparty_env.model.checkpoint import CheckpointError, load_world_model, save_checkpoint
from actionparty_env.model.codebook import Codebook
from actionparty_env.model.network import Blocks
from actionparty_env.model.sampler import DreamSimulator, unmask_schedule
from tests.conftest import TINY_VOCAB, tiny_model

R, C, N, T, V = 4, 5, 3, 3, TINY_VOCAB  # tiny_model (tests/conftest.py): TINY_VOCAB codes


def random_blocks(b=2, seed=0) -> Blocks:
    g = torch.Generator().manual_seed(seed)
    return Blocks(
        game=torch.tensor([0, 1][:b]),
        codes=torch.randint(0, V, (b, T, R, C), generator=g),
        players=PlayerStates(
            torch.stack([torch.randint(0, R, (b, T, N), generator=g), torch.randint(0, C, (b, T, N), generator=g)], -1),
            torch.randint(0, 4, (b, T, N), generator=g), torch.ones(b, T, N, dtype=torch.bool)),
        actions=torch.randint(0, 8, (b, T, N), generator=g),
        present=torch.ones(b, N, dtype=torch.bool),
    )


def test_forward_shapes():
    out = tiny_model()(random_blocks())
    assert out["code_logits"].shape == (2, T, R * C, V)
    assert out["cell_logits"].shape == (2, T, N, R * C)
    assert out["facing_logits"].shape == (2, T, N, 4)
    assert out["alive_logit"].shape == (2, T, N) and out["reward"].shape == (2, T, N)


def test_masks_isolate_subjects():
    layout = block_layout(0, R, C, N, "cpu").cat(block_layout(1, R, C, N, "cpu"))
    vis = visibility(layout, layout)
    subject = (layout.kind == POSE) | (layout.kind == ACTION)
    q_idx, k_idx = torch.nonzero(vis & subject[:, None] & subject[None, :], as_tuple=True)
    assert len(q_idx) > 0
    assert torch.equal(layout.player[q_idx], layout.player[k_idx]), "a subject token sees another player's token"
    # Nothing in block 0 sees block 1 (causal), and frame tokens never see the same block's actions.
    assert not vis[(layout.block == 0)][:, layout.block == 1].any()
    frame0 = (layout.kind == 2) & (layout.block == 0)
    act0 = (layout.kind == ACTION) & (layout.block == 0)
    assert not vis[frame0][:, act0].any()


SHAPE = (R, C, N)
HELD = ((0, ORDER), (1, ORDER))  # a full window of the cache, then the block a pass adds


@pytest.mark.parametrize("parts", ["GPF", ORDER])
def test_a_pass_after_the_cache_has_frame_rows_that_see_one_prefix_of_the_keys(parts):
    rows = frame_rows(SHAPE, ((2, parts),), HELD + ((2, parts),), True)
    cells, block = R * C, 1 + 2 * N + R * C
    assert (rows.start, rows.stop) == (1 + N, 1 + N + cells)  # G, the N poses, then the frame
    # A sampling pass's frame sees every key; a commit's all but its own block's actions, which come last.
    assert rows.keys == 2 * block + (1 + N + cells if parts == "GPF" else block - N)


@pytest.mark.parametrize("parts", ["GPF", ORDER])
@pytest.mark.parametrize("held", [0, 1, 2])
@pytest.mark.parametrize("isolated", [True, False])
def test_the_frame_rows_are_what_visibility_says(parts, held, isolated):
    query, keys = ((held, parts),), tuple((j, ORDER) for j in range(held)) + ((held, parts),)
    cpu = torch.device("cpu")
    q, k = layout_of(*SHAPE, query, cpu), layout_of(*SHAPE, keys, cpu)
    rows = frame_rows(SHAPE, query, keys, isolated)
    frame = (q.kind == 2).nonzero().squeeze(1)
    assert (rows.start, rows.stop) == (int(frame[0]), int(frame[-1]) + 1)
    seen = visibility(q, k, isolated)[rows.start:rows.stop]
    assert seen[:, : rows.keys].all() and not seen[:, rows.keys:].any()


def test_a_training_pass_over_several_blocks_has_no_single_prefix():
    pieces = ((0, ORDER), (1, ORDER))
    assert frame_rows(SHAPE, pieces, pieces, True) is None


@pytest.mark.parametrize("parts", ["GPF", ORDER])
@pytest.mark.parametrize("hidden", [False, True])
def test_the_frame_rows_unmasked_attend_as_the_whole_mask_does(parts, hidden):
    query, keys = ((2, parts),), HELD + ((2, parts),)
    bias = attention_bias(SHAPE, query, keys, True, torch.float32, torch.device("cpu"))[None, None]
    rows = frame_rows(SHAPE, query, keys, True)
    g = torch.Generator().manual_seed(0)
    b, lq, lk = 3, bias.shape[-2], bias.shape[-1]
    q, k, v = (torch.randn(b, 2, n, 8, generator=g) for n in (lq, lk, lk))
    others = rows_bias(SHAPE, query, keys, True, torch.float32, torch.device("cpu"))[None, None]
    assert torch.equal(others, torch.cat([bias[:, :, : rows.start], bias[:, :, rows.stop:]], 2))
    frame_mask = None
    if hidden:  # a world whose cached keys are hidden (a reset), one whose last player is padded
        ok = torch.ones(b, lk, dtype=torch.bool)
        ok[0, : 2 * (lk // 3)] = False
        ok[1, layout_of(*SHAPE, keys, torch.device("cpu")).player == N - 1] = False
        bias = bias.masked_fill(~ok[:, None, None], float("-inf"))
        others = others.masked_fill(~ok[:, None, None], float("-inf"))
        frame_mask = torch.zeros(b, 1, 1, rows.keys).masked_fill(~ok[:, None, None, : rows.keys], float("-inf"))
    whole = attend(q, k, v, bias)
    split = attend(q, k, v, others, rows, frame_mask)
    torch.testing.assert_close(split, whole, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("isolated", [True, False])
def test_other_players_action_has_no_path_to_my_state_prediction(isolated):
    model = tiny_model(subject_isolation=isolated).train()
    blocks = random_blocks(b=1)
    emb = model.action_emb
    captured = {}

    def hook(module, inputs, output):
        output.retain_grad()
        captured["a"] = output
    handle = emb.register_forward_hook(hook)
    out = model(blocks)
    handle.remove()
    # The action embedding of player j at the last block vs player i's next-state outputs there.
    i, j, t = 0, 2, T - 1
    target = out["cell_logits"][0, t, i].sum() + out["facing_logits"][0, t, i].sum() + out["reward"][0, t, i]
    target.backward()
    grad = captured["a"].grad  # [B, N, d] of the last embed_block call (block T-1)
    assert grad[0, i].abs().max() > 0, "player i's own action must matter"
    if isolated:
        assert grad[0, j].abs().max() == 0, "player j's action leaks into player i's prediction"
    else:  # the ablation: subject tokens see each other, so j's action reaches i's prediction
        assert grad[0, j].abs().max() > 0


def test_without_isolation_subject_tokens_see_each_other_but_stay_causal():
    layout = block_layout(0, R, C, N, "cpu").cat(block_layout(1, R, C, N, "cpu"))
    vis = visibility(layout, layout, isolate_subjects=False)
    pose1, act1 = (layout.kind == POSE) & (layout.block == 1), (layout.kind == ACTION) & (layout.block == 1)
    assert vis[pose1][:, pose1].all() and vis[act1][:, act1 | pose1].all()
    assert not vis[(layout.block == 0)][:, layout.block == 1].any()
    frame1 = (layout.kind == 2) & (layout.block == 1)
    assert not vis[frame1][:, act1].any()  # a block's frame still never sees that block's actions


def players_shifted(blocks: Blocks) -> Blocks:
    """`blocks` with every player one cell down and right (wrapping), the rest the same."""
    return dataclasses.replace(blocks, players=dataclasses.replace(blocks.players,
                                                                   cells=(blocks.cells + 1) % torch.tensor([R, C])))


def _outputs(model, blocks):
    with torch.no_grad():
        return torch.cat([v.flatten() for v in model(blocks).values()])


@pytest.mark.parametrize("spatial_rope", [True, False])
def test_spatial_rope_is_the_only_way_cells_reach_the_subject_tokens(spatial_rope):
    model = tiny_model(spatial_rope=spatial_rope)
    blocks = random_blocks(b=1)
    moved = players_shifted(blocks)
    changed = not torch.allclose(_outputs(model, blocks), _outputs(model, moved))
    assert changed == spatial_rope


def test_frame_occupancy_marks_each_live_player_cell():
    model = tiny_model(frame_occupancy=True)
    blocks = random_blocks(b=1)
    blocks.cells[0, 0] = torch.tensor([[0, 1], [2, 3], [3, 4]])
    blocks.alive[0, 0, 2] = False
    grid = model.occupancy(blocks, 0, C).view(R, C, -1)
    marked = grid.abs().sum(-1) > 0
    assert marked.sum() == 2 and marked[0, 1] and marked[2, 3]  # the dead player marks nothing
    slot0 = model.occupant_emb.weight[0 * 4 + blocks.facing[0, 0, 0]]
    assert torch.allclose(grid[0, 1], slot0)
    # Without spatial RoPE, cells still reach the frame through the occupancy.
    model = tiny_model(spatial_rope=False, frame_occupancy=True)
    moved = players_shifted(blocks)
    assert not torch.allclose(_outputs(model, blocks), _outputs(model, moved))


def test_sampler_steps_and_is_deterministic():
    model = tiny_model()
    frames = model.codebook().decode(torch.randint(0, V, (2, R, C)))
    cells = torch.tensor([[[0, 0], [1, 1], [2, 2]]] * 2)
    runs = []
    for _ in range(2):
        sim = DreamSimulator(model, "game_a", N, num_worlds=2, sampling_steps=3, temperature=1.0, seed=7)
        sim.reset(frames, PlayerStates(cells, torch.zeros(2, N), torch.ones(2, N, dtype=torch.bool)))
        outs = [sim.step(torch.randint(0, 7, (2, N), generator=torch.Generator().manual_seed(s))) for s in range(5)]
        runs.append(torch.stack([o.frames for o in outs]))
        assert outs[-1].frames.shape == (2, R * 8, C * 8, 3) and outs[-1].frames.dtype == torch.uint8
        assert outs[-1].cells.shape == (2, N, 2) and outs[-1].rewards.dtype == torch.float32
    assert torch.equal(runs[0], runs[1])
    # The KV cache keeps only `window` blocks.
    assert int(sim.cache.layout.block.unique().numel()) == model.cfg.window


def test_partial_reset_restarts_only_the_chosen_worlds():
    model = tiny_model()
    book = model.codebook()
    frames = book.decode(torch.randint(0, V, (2, R, C)))
    cells = torch.tensor([[[0, 0], [1, 1], [2, 2]]] * 2)
    sim = DreamSimulator(model, "game_a", N, num_worlds=2)
    sim.reset(frames, PlayerStates(cells, torch.zeros(2, N), torch.ones(2, N, dtype=torch.bool)))
    for _ in range(3):
        sim.step(torch.zeros(2, N, dtype=torch.long))
    before = sim.codes.clone()
    fresh = book.decode(torch.randint(0, V, (2, R, C)))
    sim.reset(fresh, PlayerStates(cells.flip(1), torch.ones(2, N), torch.ones(2, N, dtype=torch.bool)),
              worlds=torch.tensor([True, False]))
    assert torch.equal(sim.codes[1], before[1]) and torch.equal(book.decode(sim.codes[0]), fresh[0])
    assert torch.equal(sim.players.cells[0], cells[0].flip(0)) and torch.equal(sim.players.facing[0], torch.ones(N, dtype=torch.long))
    assert not sim.cache.key_ok[0].any() and sim.cache.key_ok[1].all()  # world 0 forgets its past
    out = sim.step(torch.zeros(2, N, dtype=torch.long))
    assert out.cells.shape == (2, N, 2) and out.facing.shape == (2, N)


def test_unmask_schedule_ends_with_all_cells():
    for k in (1, 2, 4):
        sched = unmask_schedule(20, k)
        assert sched[-1] == 20 and sched == sorted(sched)


def test_codebook_roundtrip_and_nearest():
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    book = Codebook(patches)
    codes = rng.integers(0, 6, (3, 4))
    frame = book.decode_numpy(codes)
    assert np.array_equal(book.encode(frame), codes)
    assert torch.equal(book.decode(torch.from_numpy(codes)), torch.from_numpy(frame))
    noisy = frame.copy()
    noisy[0, 0] ^= 1  # an unseen patch maps to its nearest code
    assert np.array_equal(book.encode(noisy), codes) and book.unknown_patches == 1


@pytest.mark.parametrize("switches", [{}, {"frame_occupancy": True, "spatial_rope": False, "subject_isolation": False}])
def test_checkpoint_roundtrip_is_bit_exact(tmp_path, switches):
    model = tiny_model(3, **switches)
    save_checkpoint(model, tmp_path / "ck")
    loaded = load_world_model(tmp_path / "ck")
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    assert loaded.games == model.games and loaded.cfg == model.cfg


def test_truncated_checkpoint_names_the_file(tmp_path):
    save_checkpoint(tiny_model(), tmp_path / "ck")
    shard = next((tmp_path / "ck").glob("model-*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=shard.name):
        load_world_model(tmp_path / "ck")


def test_mismatched_checkpoint_names_the_file(tmp_path):
    import json
    save_checkpoint(tiny_model(), tmp_path / "ck")
    cfg_path = tmp_path / "ck" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["model"]["dim"] = 64
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"model-00001-of-00001.safetensors.*shape"):
        load_world_model(tmp_path / "ck")


def test_unknown_substrate_is_a_clear_error():
    with pytest.raises(ValueError, match="does not know the substrate 'nope'"):
        DreamSimulator(tiny_model(), "nope", N)
