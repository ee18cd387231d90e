"""The bundled checkpoints (actionparty_env/checkpoints/default, and the small CPU model beside it) load on
the CPU and dream one step of every one of the 49 substrates from their start states, and the step looks
like the game: every cell is one of that game's patches, most cells keep the start frame's patch, and
players told NOOP stay put. Both fit the size budget together; the small one shares the default's facts
of the games (start states, view tables) and is reached by name."""
from __future__ import annotations

import functools
import json

import pytest
import torch

from actionparty_env.env import DreamConfig
from actionparty_env.games import get_game, load_catalog
from actionparty_env.grid import CELL
from actionparty_env.model.checkpoint import (BUNDLED, BUNDLED_FOLDER, DEFAULT_CHECKPOINT, CheckpointError,
                                              load_world_model, resolve_checkpoint)
from actionparty_env.model.sampler import DreamSimulator
from actionparty_env.simulator import StartStates

SUBSTRATES = sorted(load_catalog())


@functools.cache
def bundled_model(name: str):
    return load_world_model(name, "cpu")


@pytest.fixture(scope="module")
def starts() -> StartStates:
    return StartStates.load(DEFAULT_CHECKPOINT)


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundle_is_complete_and_within_its_size_limits(name, starts):
    model, folder = bundled_model(name), BUNDLED[name]
    assert len(SUBSTRATES) == 49 and model.games == SUBSTRATES and starts.substrates() == SUBSTRATES
    shards = sorted(folder.glob("model-*.safetensors"))
    config = json.loads((folder / "config.json").read_text())
    assert sorted(config["shards"]) == [p.name for p in shards]
    assert max(p.stat().st_size for p in shards) <= 15 * 2**20
    assert config["training"]["steps"] > 0 and not model.training


def test_the_bundled_checkpoints_fit_48_mib_together_and_share_the_games_facts():
    files = {p.resolve() for p in BUNDLED_FOLDER.rglob("*") if p.is_file()}  # a shared file counts once
    assert sum(p.stat().st_size for p in files) <= 48 * 2**20
    for name in ("start_states.npz", "view_tables.npz"):
        assert (BUNDLED["small"] / name).resolve() == (DEFAULT_CHECKPOINT / name).resolve()


def test_the_small_checkpoint_is_smaller_and_reached_by_name():
    small, default = bundled_model("small"), bundled_model("default")
    assert sum(p.numel() for p in small.parameters()) < 0.5 * sum(p.numel() for p in default.parameters())
    assert DreamConfig("coins", checkpoint="small").checkpoint == BUNDLED["small"]
    assert DreamConfig("coins", checkpoint="default").checkpoint == DreamConfig("coins").checkpoint == DEFAULT_CHECKPOINT


def test_a_named_checkpoint_that_is_not_installed_is_a_checkpoint_error(monkeypatch, tmp_path):
    monkeypatch.setitem(BUNDLED, "small", tmp_path / "absent")
    with pytest.raises(CheckpointError, match="'small' is not installed"):
        resolve_checkpoint("small")
    assert resolve_checkpoint(str(tmp_path)) == tmp_path  # any other string is a folder path


# The fast tier dreams coins; the other 48 substrates (4 to 10 s each on 2 CPU cores) are `slow`.
@pytest.mark.parametrize("name", sorted(BUNDLED))
@pytest.mark.parametrize("substrate", [s if s == "coins" else pytest.param(s, marks=pytest.mark.slow)
                                       for s in SUBSTRATES])
def test_one_dream_step_from_a_start_state(name, starts, substrate):
    model = bundled_model(name)
    start = starts.states[substrate][0]
    n = start.num_players
    sim = DreamSimulator(model, substrate, n, 1, "cpu", sampling_steps=1)
    sim.reset(start.frame[None], start.players[None])
    noop = get_game(substrate).action_names.index("NOOP")
    res = sim.step(torch.full((1, n), noop, dtype=torch.long))

    rows, cols = start.frame.shape[0] // CELL, start.frame.shape[1] // CELL
    assert res.frames.dtype == torch.uint8 and tuple(res.frames.shape) == (1, *start.frame.shape)
    assert res.cells.dtype == torch.long and tuple(res.cells.shape) == (1, n, 2)
    assert res.facing.dtype == torch.long and tuple(res.facing.shape) == (1, n)
    assert res.alive.dtype == torch.bool and tuple(res.alive.shape) == (1, n)
    assert res.rewards.dtype == torch.float32 and tuple(res.rewards.shape) == (1, n)
    assert torch.isfinite(res.rewards).all()
    assert (res.cells >= 0).all() and (res.cells[..., 0] < rows).all() and (res.cells[..., 1] < cols).all()
    assert ((res.facing >= 0) & (res.facing <= 3)).all()

    frame = res.frames[0].numpy()
    codebook = model.codebook()
    unknown_before = codebook.unknown_patches
    codes = codebook.encode(frame)
    assert codebook.unknown_patches == unknown_before, "a generated cell is not a codebook patch"
    game_codes = model.game_codes[model.game_index(substrate)].numpy()
    assert game_codes[codes].all(), "a generated cell shows a patch of another game"
    # Not noise: most cells keep the start frame's patch (measured 0.63 on boat_race__eight_races, whose
    # first step redraws the track, 0.73 on clean_up, >= 0.82 elsewhere, 1.0 on the cooking maps).
    same = float((codes == codebook.encode(start.frame)).mean())
    assert same >= 0.5, f"only {same:.2f} of the cells keep the start frame's patch"
    # Players told NOOP keep their cell (measured: all, except 1 of 9 and 1 of 13 on two substrates).
    alive = start.alive.astype(bool)
    kept = (res.cells[0].numpy() == start.cells).all(-1)[alive]
    assert kept.mean() >= 0.5, f"{int((~kept).sum())} of {len(kept)} players moved on NOOP"


# Two coins builds where, left to the model alone, a player crossed a wall within 3 steps (both) and a
# coin spawned beyond the map at step 16 (seed 4).
@pytest.mark.parametrize("seed", [3, 4])
def test_no_one_walks_through_coins_walls_and_the_void_beyond_stays_void(seed):
    """Coins' walls (the grey cells of its corner's code) stay where they are and no player stands on
    one, over 20 steps of mostly FORWARD: a move into a wall fails, as in the engine. The canvas beyond
    the walled map (coins draws its size per build) never changes."""
    from actionparty_env import parallel_env

    env = parallel_env("coins", checkpoint="default", device="cpu")
    env.reset(seed=seed)
    sim = env.unwrapped.dream.sim
    start = sim.codes[0].clone()
    wall = start == start[0, 0]  # the map's corner is always wall
    assert wall.sum() >= 40
    inside = torch.zeros_like(wall)  # the walls' bounding box: the map
    inside[: wall.nonzero()[:, 0].max() + 1, : wall.nonzero()[:, 1].max() + 1] = True
    gen = torch.Generator().manual_seed(seed)
    moves = torch.tensor([1, 1, 1, 2, 3, 4, 5, 6])  # FORWARD x3, BACKWARD, STEP_LEFT/RIGHT, TURN_LEFT/RIGHT
    for _ in range(20):
        env.step({a: int(moves[torch.randint(len(moves), (1,), generator=gen)]) for a in env.agents})
        cells = sim.players.cells[0]
        assert not wall[cells[:, 0], cells[:, 1]].any()
        assert (sim.codes[0][wall] == start[wall]).all()
        assert (sim.codes[0][~inside] == start[~inside]).all()
