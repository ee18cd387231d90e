"""`PlayerStates`, the one record of every player's cell, facing and alive flag (actionparty_env/grid.py):
the same helpers on numpy arrays and torch tensors, and the records that hold one forward to it."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from actionparty_env.grid import PlayerStates
from actionparty_env.real import EngineStep
from actionparty_env.simulator import StartState, StepResult


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
    for record, players in ((result, result.players), (start, start.players), (step, step.players)):
        assert record.cells is players.cells and record.facing is players.facing and record.alive is players.alive
        assert "cells" not in {f.name for f in dataclasses.fields(record)}  # one type owns the fields
    assert start.first(1).players.cells.tolist() == [[0, 1]] and start.num_players == 3
    with pytest.raises(AttributeError):
        result.cells = p.cells  # read-only: set `players`
