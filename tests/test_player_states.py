"""`PlayerStates`, the one record of every player's cell, facing and alive flag (actionparty_env/grid.py):
the same helpers on numpy arrays and torch tensors, the records that hold one forward to it, and a
simulator's `reset(frames, players, worlds)` (the old three-array form still works, with a warning), and
the model's input `Blocks`, which holds one per time block."""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch

from actionparty_env.env import parallel_env
from actionparty_env.grid import PlayerStates
from actionparty_env.model.network import Blocks
from actionparty_env.model.sampler import DreamSimulator
from actionparty_env.real import EngineStep
from actionparty_env.simulator import CopyLastFrameSimulator, StartState, StepResult, takes_old_reset
from tests.conftest import TINY_VOCAB, tiny_model
from training.policies import State


def two_worlds(kind):
    """B=2 worlds of N=3 players, as numpy arrays or torch tensors."""
    cells = np.arange(12).reshape(2, 3, 2)
    facing = np.array([[0, 1, 2], [3, 0, 1]])
    alive = np.array([[True, False, True], [False, True, True]])
    if kind == "torch":
        return PlayerStates(torch.from_numpy(cells), torch.from_numpy(facing), torch.from_numpy(alive))
    return PlayerStates(cells, facing, alive)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_helpers_work_on_numpy_and_torch(kind):
    p = two_worlds(kind)
    assert p[1].cells.tolist() == [[6, 7], [8, 9], [10, 11]] and p[1].facing.tolist() == [3, 0, 1]
    first = p.first(2)
    assert tuple(first.cells.shape) == (2, 2, 2) and tuple(first.facing.shape) == (2, 2)
    assert tuple(first.alive.shape) == (2, 2)
    other = PlayerStates(p.cells * 0 - 1, p.facing * 0, p.alive & False)
    mixed = p.where(np.array([False, True]) if kind == "numpy" else torch.tensor([False, True]), other)
    assert mixed[0].cells.tolist() == [[-1, -1]] * 3 and mixed[1].cells.tolist() == p[1].cells.tolist()
    assert mixed[0].alive.tolist() == [False] * 3 and mixed[1].alive.tolist() == p[1].alive.tolist()
    t = p.to("cpu")
    assert (t.cells.dtype, t.facing.dtype, t.alive.dtype) == (torch.long, torch.long, torch.bool)
    assert torch.equal(PlayerStates.stack([t[0], t[1]]).cells, t.cells)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_infos_are_the_envs_entries_and_round_trip(kind):
    p = two_worlds(kind)
    infos = p.infos()  # world-major, as the vector envs' slots
    assert len(infos) == 6 and infos[4] == {"cell": (8, 9), "facing": 0, "alive": True}
    assert all(type(i["cell"][0]) is int and type(i["facing"]) is int and type(i["alive"]) is bool for i in infos)
    assert tuple(infos[0]) == PlayerStates.INFO_KEYS
    agents = ["a", "b", "c"]
    back = PlayerStates.from_infos(dict(zip(agents, p[1].infos())), agents)
    assert back.cells.tolist() == p[1].cells.tolist() and back.alive.tolist() == p[1].alive.tolist()
    stored = p[0].arrays("x/")
    assert {k: v.dtype for k, v in stored.items()} == {"x/cells": np.int16, "x/facing": np.int8, "x/alive": bool}
    loaded = PlayerStates.from_arrays(stored, "x/")
    assert loaded.cells.dtype == np.int64 and loaded.facing.tolist() == p[0].facing.tolist()


def test_records_hold_one_and_forward_to_it():
    p = two_worlds("torch")
    result = StepResult(torch.zeros(2, 8, 8, 3, dtype=torch.uint8), p, torch.zeros(2, 3))
    start = StartState(np.zeros((8, 8, 3), np.uint8), two_worlds("numpy")[0])
    step = EngineStep(None, np.zeros((3, 8, 8, 3), np.uint8), two_worlds("numpy")[1], np.zeros(3, np.float32), False)
    seen = State(two_worlds("numpy")[0], 4, 6)  # what training/policies.py's closed-loop policies see
    for record, players in ((result, result.players), (start, start.players), (step, step.players),
                            (seen, seen.players)):
        assert record.cells is players.cells and record.facing is players.facing and record.alive is players.alive
        assert "cells" not in {f.name for f in dataclasses.fields(record)}  # one type owns the fields
    assert start.first(1).players.cells.tolist() == [[0, 1]] and start.num_players == 3
    with pytest.raises(AttributeError):
        result.cells = p.cells  # read-only: set `players`
    with pytest.raises(AttributeError):
        seen.alive = p.alive.numpy()


# The model's outputs on `model_inputs` before Blocks held a PlayerStates (its three tensors then were
# Blocks fields of their own): per head, the sum and the sum of absolute values.
BLOCKS_FORWARD = {
    "alive_logit": (1.114882, 1.187051), "cell_logits": (0.831277, 2.235619), "change_logit": (1.005048, 6.004236),
    "code_logits": (-49.915012, 126.556167), "facing_logits": (-5.080626, 8.096603),
    "move_logits": (-3.519631, 15.909749), "reward_logits": (-2.672145, 4.740581)}


def model_inputs():
    """A batch of 2 worlds, 3 time blocks, 3 players (some dead, one slot absent) for tiny_model's games."""
    g = torch.Generator().manual_seed(5)
    b, t, n, r, c = 2, 3, 3, 4, 5
    codes = torch.randint(0, TINY_VOCAB, (b, t, r, c), generator=g)
    cells = torch.stack([torch.randint(0, r, (b, t, n), generator=g), torch.randint(0, c, (b, t, n), generator=g)], -1)
    players = PlayerStates(cells, torch.randint(0, 4, (b, t, n), generator=g), torch.rand(b, t, n, generator=g) < 0.7)
    actions = torch.randint(0, 8, (b, t, n), generator=g)
    return Blocks(torch.tensor([0, 1]), codes, players, actions, torch.tensor([[True] * 3, [True, True, False]]))


def test_blocks_hold_one_and_the_model_reads_it_as_before():
    blocks = model_inputs()
    assert isinstance(blocks.players, PlayerStates) and "cells" not in {f.name for f in dataclasses.fields(blocks)}
    assert blocks.cells is blocks.players.cells and blocks.facing is blocks.players.facing
    assert blocks.alive is blocks.players.alive and tuple(blocks.cells.shape) == (2, 3, 3, 2)
    with pytest.raises(AttributeError):
        blocks.facing = blocks.facing  # read-only: set `players`
    model = tiny_model(frame_occupancy=True, move_head=True, change_head=True, reward_bins=4)  # reads all three
    with torch.no_grad():
        out = model(blocks)
    got = {k: (float(v.double().sum()), float(v.double().abs().sum())) for k, v in out.items()}
    assert got.keys() == BLOCKS_FORWARD.keys()
    for k, expected in BLOCKS_FORWARD.items():
        assert got[k] == pytest.approx(expected, abs=1e-4), k
    # A player's state reaches the outputs (so the numbers above pin where the model reads it).
    moved = dataclasses.replace(blocks, players=dataclasses.replace(blocks.players, facing=(blocks.facing + 1) % 4))
    with torch.no_grad():
        assert not torch.allclose(model(moved)["code_logits"], out["code_logits"])


# --------------------------------------------------------------------- a simulator's reset(frames, players)
def start(seed=0):
    """Frames and players of 2 worlds of 3 players for tiny_model's game_a, and a partial reset's."""
    g = torch.Generator().manual_seed(seed)
    book = tiny_model().codebook()
    frames = [book.decode(torch.randint(0, TINY_VOCAB, (2, 4, 5), generator=g)) for _ in range(2)]
    cells = torch.stack([torch.randint(0, 4, (2, 3), generator=g), torch.randint(0, 5, (2, 3), generator=g)], -1)
    facing = torch.randint(0, 4, (2, 2, 3), generator=g)
    players = [PlayerStates(cells, facing[0], torch.tensor([[True, True, False]] * 2)),
               PlayerStates(cells.flip(1), facing[1], torch.ones(2, 3, dtype=torch.bool))]
    return frames, players


def dream(old_form: bool) -> list[StepResult]:
    """5 steps of a sampled (temperature 1) dream with a partial reset after the second, reset either way."""
    frames, players = start()
    sim = DreamSimulator(tiny_model(), "game_a", 3, num_worlds=2, sampling_steps=2, temperature=1.0, seed=7)
    g, out = torch.Generator().manual_seed(1), []
    for i, (worlds, steps) in enumerate(((None, 2), (torch.tensor([False, True]), 3))):
        p = players[i]
        if old_form:
            sim.reset(frames[i], p.cells, p.facing, p.alive, worlds)
        else:
            sim.reset(frames[i], p, worlds)
        out += [sim.step(torch.randint(0, 7, (2, 3), generator=g)) for _ in range(steps)]
    return out


def test_reset_with_players_dreams_what_the_old_form_did():
    with pytest.warns(DeprecationWarning):
        old = dream(old_form=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new form warns about nothing
        new = dream(old_form=False)
    for a, b in zip(old, new, strict=True):
        assert torch.equal(a.frames, b.frames) and torch.equal(a.rewards, b.rewards)
        assert all(torch.equal(x, y) for x, y in zip(dataclasses.astuple(a.players), dataclasses.astuple(b.players)))
    assert not torch.equal(new[1].frames[1], new[2].frames[1])  # the partial reset reached world 1


def test_the_old_reset_form_warns_says_what_to_call_and_still_works():
    frames, (p, q) = start()
    sim = CopyLastFrameSimulator("game_a", 3, num_worlds=2)
    sim.reset(frames[0], p)
    calls = {"positional": lambda: sim.reset(frames[1], q.cells, q.facing, q.alive, torch.tensor([True, False])),
             "by name": lambda: sim.reset(frames=frames[1], cells=q.cells, facing=q.facing, alive=q.alive,
                                          worlds=torch.tensor([True, False]))}
    for how, call in calls.items():
        sim.reset(frames[0], p)
        with pytest.warns(DeprecationWarning, match=r"call CopyLastFrameSimulator.reset\(frames, PlayerStates\(cells, "
                                                    r"facing, alive\), worlds\)") as seen:
            call()
        assert seen[0].filename == __file__, how  # attributed to the caller's line, not to the library
        out = sim.step(torch.zeros(2, 3, dtype=torch.long))
        assert torch.equal(out.frames[0], frames[1][0]) and torch.equal(out.frames[1], frames[0][1]), how
        assert torch.equal(out.players[0].cells, q.cells[0]) and torch.equal(out.players[1].facing, p.facing[1]), how
    dreamer = DreamSimulator(tiny_model(), "game_a", 3, num_worlds=2)  # reset_codes has the same path
    with pytest.warns(DeprecationWarning, match=r"call DreamSimulator.reset_codes\(codes, PlayerStates"):
        dreamer.reset_codes(torch.zeros(2, 4, 5, dtype=torch.long), p.cells, p.facing, p.alive)
    assert torch.equal(dreamer.players.cells, p.cells) and torch.equal(dreamer.players.alive, p.alive)


class OldStyle(CopyLastFrameSimulator):
    """A user's simulator written for the old signature, calling the baseline's reset the old way."""

    def reset(self, frames, cells, facing, alive, worlds=None):
        self.got = (cells, facing, alive)
        super().reset(frames, cells, facing, alive, worlds)


class OldProtocol:
    """A user's simulator of the protocol only (no base class), old signature, names of its own."""

    def __init__(self, num_players, num_worlds, device):
        self.game, self.num_players, self.num_worlds, self.device = "coins", num_players, num_worlds, device
        self.inner = CopyLastFrameSimulator("coins", num_players, num_worlds, device)

    def reset(self, frames, where, heading, living, worlds=None):
        self.inner.reset(frames, PlayerStates(where, heading, living), worlds)

    def step(self, actions):
        return self.inner.step(actions)


def test_a_users_simulator_with_the_old_signature_is_detected_warned_and_still_runs():
    assert not takes_old_reset(CopyLastFrameSimulator("coins", 2)) and takes_old_reset(OldStyle("coins", 2))
    assert takes_old_reset(OldProtocol(2, 1, "cpu"))

    def episode(simulator):
        env = parallel_env("coins", device="cpu", simulator=simulator)  # the bundled start states, no model
        obs, infos = env.reset(seed=3)
        obs2, _, _, _, infos2 = env.step({a: 1 for a in env.agents})
        return [obs, infos, obs2, infos2], env

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expected, _ = episode(lambda n, b, device: CopyLastFrameSimulator("coins", n, b, device))
    for simulator in (OldProtocol, lambda n, b, device: OldStyle("coins", n, b, device)):
        with pytest.warns(DeprecationWarning) as seen:
            got, env = episode(simulator)
        told = [w for w in seen if "define reset(self, frames, players, worlds=None)" in str(w.message)]
        assert told and told[0].filename == __file__  # the user's call to env.reset, not a line of the library
        # OldStyle's own super().reset(frames, cells, facing, alive, worlds) is told too, at its line
        assert {w.filename for w in seen} == {__file__} and len(seen) == 2 * len(told) - (simulator is OldProtocol)
        assert len(got) == len(expected)
        for a, b in zip(got[::2], expected[::2]):
            assert all(np.array_equal(a[k], b[k]) for k in a)
        assert got[1::2] == expected[1::2]
    cells, facing, alive = env.dream.sim.got  # OldStyle's reset got the three arrays of one world
    assert tuple(cells.shape) == (1, 2, 2) and tuple(facing.shape) == (1, 2) and alive.dtype == torch.bool
