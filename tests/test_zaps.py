"""Zaps that remove players, by the game's rule (actionparty_env/zaps.py): the settings, the beam on
hand-made maps, the clocks, the real engine, and the bundled dream."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from actionparty_env.games import get_game
from actionparty_env.zaps import (BEAM_COLOUR, FIRE_ZAP, ZAPPERS, Zapper, ZapState, after_hits, zap_beam_code, zap_beams,
                                  zap_step)
from tests.real_engine import real_steps, substrate_config


def _zapper_kwargs(substrate: str) -> dict:
    """The Zapper kwargs of a substrate's avatars, from the lab2d settings its config builds (all alike)."""
    from actionparty_env.meltingpot_import import get_config

    config = get_config(substrate)
    settings = substrate_config(substrate).build(config.default_player_roles, config)
    found = [c["kwargs"] for obj in settings["simulation"]["gameObjects"] for c in obj["components"]
             if c["component"] == "Zapper"]
    assert len(found) == len(config.default_player_roles) and all(k == found[0] for k in found)
    return found[0]


@pytest.mark.parametrize("substrate", sorted(ZAPPERS))
def test_the_zappers_settings_are_the_installed_configs(substrate):
    kwargs, zapper = _zapper_kwargs(substrate), ZAPPERS[substrate]
    assert (kwargs["cooldownTime"], kwargs["beamLength"], kwargs["beamRadius"], kwargs["framesTillRespawn"]) == (
        zapper.cooldown, zapper.length, zapper.radius, zapper.respawn_after)
    assert kwargs.get("removeHitPlayer", True)  # a hit removes the player (the rule's premise)
    assert kwargs["penaltyForBeingZapped"] == 0 and kwargs["rewardForZapping"] == 0  # zaps pay nothing
    assert FIRE_ZAP in get_game(substrate).action_names


def _fire(zapper, zapper_at, facing, others=(), walls=(), rows=9, cols=9):
    """One zapper at `zapper_at` facing `facing` fires among players at `others`, walls at `walls`:
    (whom it hits, as 1-based indices into `others`; the cells its beam is drawn on, a set of (row, col))."""
    cells = torch.tensor([[zapper_at, *others]])
    fires = torch.tensor([[True] + [False] * len(others)])
    blocks = torch.zeros(1, rows * cols, dtype=torch.bool)
    for r, c in walls:
        blocks[0, r * cols + c] = True
    hit, beam = zap_beams(zapper, fires, cells, torch.tensor([[facing] + [0] * len(others)]), torch.ones_like(fires),
                          blocks, rows, cols)
    return ([i for i in range(1, len(others) + 1) if hit[0, 0, i]],
            {divmod(int(i), cols) for i in beam[0].nonzero().flatten()})


def _hits(*args, **kwargs) -> list[int]:
    return _fire(*args, **kwargs)[0]


def _beam(*args, **kwargs) -> set[tuple[int, int]]:
    return _fire(*args, **kwargs)[1]


def test_the_beam_covers_three_lines_ahead_and_beside_and_stops_at_walls_and_players():
    z = Zapper(cooldown=2, length=3, radius=1, respawn_after=4)
    # facing north from (5, 5): the line ahead (4..2, 5); the side lines start beside, (5..3, 4) and (5..3, 6)
    reached = [(4, 5), (3, 5), (2, 5), (5, 4), (4, 4), (3, 4), (5, 6), (4, 6), (3, 6)]
    missed = [(1, 5), (2, 4), (2, 6), (6, 5), (5, 3), (5, 7), (4, 3)]
    assert all(_hits(z, (5, 5), 0, [cell]) == [1] for cell in reached)
    assert _hits(z, (5, 5), 0, missed) == []
    assert _hits(z, (5, 5), 0, [(2, 5), (3, 4), (4, 6)]) == [1, 2, 3]  # one on each line
    # facing east: the line ahead runs east, the sides north and south of the zapper
    assert _hits(z, (5, 5), 1, [(5, 8), (4, 7), (6, 5)]) == [1, 2, 3]
    assert _hits(z, (5, 5), 1, [(5, 4), (3, 5), (5, 9)]) == []
    # a player stops its line: the one behind it is not hit; a wall stops it too
    assert _hits(z, (5, 5), 0, [(4, 5), (3, 5)]) == [1]
    assert _hits(z, (5, 5), 0, [(3, 5)], walls=[(4, 5)]) == []
    assert _hits(z, (5, 5), 0, [(3, 4)], walls=[(5, 4)]) == []  # a side line blocked beside the zapper
    # the map's edge stops it, and nobody is hit by a beam that was not fired
    assert _hits(z, (0, 5), 0, [(0, 4)]) == [1]
    cells = torch.tensor([[[5, 5], [4, 5]]])
    none, beam = zap_beams(z, torch.tensor([[False, False]]), cells, torch.zeros(1, 2, dtype=torch.long),
                           torch.ones(1, 2, dtype=torch.bool), torch.zeros(1, 81, dtype=torch.bool), 9, 9)
    assert not none.any() and not beam.any()
    wide = Zapper(cooldown=0, length=3, radius=2, respawn_after=1)  # radius 2: the side at 2 runs 2 cells
    assert _hits(wide, (5, 5), 0, [(4, 3)]) == [1] and _hits(wide, (5, 5), 0, [(3, 3)]) == []
    assert _hits(wide, (5, 5), 0, [(4, 3)], walls=[(5, 4)]) == []  # the side shut beside the zapper


def test_the_beam_is_drawn_on_each_lines_cells_before_what_stops_it():
    z = Zapper(cooldown=2, length=3, radius=1, respawn_after=4)
    assert _beam(z, (5, 5), 0) == {(4, 5), (3, 5), (2, 5), (5, 4), (4, 4), (3, 4), (5, 6), (4, 6), (3, 6)}
    # a player stops the line ahead at (3, 5): drawn before it only; a wall beside: that line not at all
    assert _beam(z, (5, 5), 0, others=[(3, 5)], walls=[(5, 4)]) == {(4, 5), (5, 6), (4, 6), (3, 6)}
    assert _beam(z, (0, 0), 0) == {(0, 1)}  # facing the edge: only the right side line's first cell is on the map
    assert _beam(z, (0, 0), 2) == {(1, 0), (2, 0), (3, 0), (0, 1), (1, 1), (2, 1)}


def test_the_cooldown_and_the_wait_count_as_the_lua_counts_them():
    z = Zapper(cooldown=2, length=3, radius=1, respawn_after=4)
    state = ZapState.fresh((1, 1), "cpu")
    alive = torch.tensor([[True]])
    fired = []
    for _ in range(7):  # FIRE_ZAP every step: fires, then counts 2 steps down, then fires again
        fires, returns, state = zap_step(z, state, alive, torch.tensor([[True]]))
        fired.append(bool(fires))
        assert not returns.any()
        state = after_hits(state, alive)
    assert fired == [True, False, False, True, False, False, True]
    # removed: off the map respawn_after + 1 steps (the engine's count), then back
    back_at = None
    for t in range(10):
        _, returns, state = zap_step(z, state, torch.tensor([[False]]), torch.tensor([[False]]))
        if returns.any():
            back_at = t
            break
        state = after_hits(state, torch.tensor([[False]]))
    assert back_at == z.respawn_after + 1


@pytest.mark.slow
@pytest.mark.parametrize("substrate", ["commons_harvest__open", "clean_up"])
def test_the_zap_rule_removes_and_returns_exactly_the_players_the_real_engine_does(substrate):
    """Real episodes: from the players' actions and their cells and facings after the moves, the rule
    names every player the engine removes, and no other, brings each back at the step it returns, and
    draws the beam on exactly the cells the engine's frame shows it."""
    config, zapper = substrate_config(substrate), ZAPPERS[substrate]
    ascii_map = [line for line in config.ASCII_MAP.split("\n") if line]
    rows, cols = len(ascii_map), len(ascii_map[0])
    walls = torch.tensor([[ch == "W" for ch in line] for line in ascii_map]).view(1, -1)
    state, removed, returned, beams, crossed = None, 0, 0, 0, 0
    fire = get_game(substrate).action_names.index(FIRE_ZAP)
    for actions, (_, _, alive), (cells, facing, alive_next), frame, _ in real_steps(substrate, 3, 700, fire, 0.2):
        zap = torch.from_numpy(actions == fire)[None]
        state = state or ZapState.fresh(tuple(alive.shape), "cpu")
        fires, returns, state = zap_step(zapper, state, alive, zap)
        hits, beam = zap_beams(zapper, fires, cells, facing, alive, walls, rows, cols)
        hit = hits.any(1)
        assert torch.equal(hit, alive & ~alive_next)
        patches = frame.reshape(rows, 8, cols, 8, 3).transpose(0, 2, 1, 3, 4).reshape(rows, cols, 64, 3)
        shown = torch.from_numpy((patches == np.asarray(BEAM_COLOUR)).all((2, 3)))
        # the beam's pixels, cell for cell; where clean_up's cleaning beam crosses it the same step, that
        # one is drawn on top (a cell all in another colour)
        plain = torch.from_numpy((patches == patches[:, :, :1]).all((2, 3)))
        assert ((beam.view(rows, cols) != shown) <= plain).all()
        crossed += int((beam.view(rows, cols) != shown).any())
        beams += int(beam.sum())
        assert torch.equal(returns, ~alive & alive_next)
        state = after_hits(state, (alive & ~hit) | returns)
        removed += int(hit.sum())
        returned += int(returns.sum())
    assert removed > 5 and returned > 3 and beams > 100 and crossed <= 7, (removed, returned, beams, crossed)


def test_the_bundled_dream_removes_only_whom_its_beams_reach_and_returns_them_on_the_clock():
    """The bundled commons_harvest__open dream on the CPU, random actions with FIRE_ZAP often: every
    removal is a beam hit from the dream's own cells, facings and actions; a removed player is not drawn
    and comes back after respawn_after + 1 steps; the frame shows the beams the rule fires, and no other;
    the zaps' state travels with a recorded step."""
    from actionparty_env.env import DreamWorlds

    worlds = DreamWorlds("commons_harvest__open", num_worlds=2, device="cpu")
    worlds.reset([0, 1])
    sim = worlds.sim
    zapper, (rows, cols) = sim.zapper, sim.codes.shape[1:]
    zap = list(worlds.game.action_names).index(FIRE_ZAP)
    rng = np.random.default_rng(0)
    alive, dead_for, removed, returned, beams = sim.players.alive.clone(), torch.zeros(2, 7, dtype=torch.long), 0, 0, 0
    assert any(t is sim.zap_state.cooling for t in sim._step_state())
    beam_code = zap_beam_code(sim.codebook.patches[sim.allowed.numpy()])
    assert sim.is_beam_code.nonzero().flatten().tolist() == [beam_code]
    for _ in range(25):
        actions = rng.integers(0, 8, (2, 7))
        actions[rng.random((2, 7)) < 0.3] = zap
        before = sim.zap_state
        prev = sim.code_index[sim.codes.view(2, -1)]
        result = sim.step(torch.as_tensor(actions))
        fires, _, _ = zap_step(zapper, before, alive, torch.from_numpy(actions == zap))
        blocks = sim.beam_blockers[prev.clamp(min=0)]
        hits, beam = zap_beams(zapper, fires, result.players.cells, result.players.facing, alive, blocks, rows, cols)
        hit = hits.any(1)
        now = result.players.alive
        assert torch.equal(alive & ~now, hit)
        back = ~alive & now
        assert (dead_for[back] == zapper.respawn_after + 1).all()
        dead_for = torch.where(now, 0, dead_for + 1)
        codes = sim.code_index[sim.codes.view(2, -1)]
        flat = result.players.cells[..., 0] * cols + result.players.cells[..., 1]
        shown = sim.player_code[codes.gather(1, flat)]
        assert shown[now].all()  # live players drawn where they stand
        drawn_beam = sim.is_beam_code[codes.clamp(min=0)]
        on_players = torch.zeros_like(beam).scatter_(1, flat, now)
        assert torch.equal(drawn_beam, beam & ~on_players)  # the rule's beams, and no other
        beams += int(drawn_beam.sum())
        removed += int(hit.sum())
        returned += int(back.sum())
        alive = now.clone()
    assert removed > 2 and returned > 0 and beams > 20, (removed, returned, beams)


def test_the_zap_rates_benchmark_counts_beam_cells_and_refuses_games_without_the_rule():
    from benchmarks import zap_rates

    frame = np.zeros((16, 24, 3), np.uint8)  # 2 x 3 cells
    frame[0:8, 8:16] = BEAM_COLOUR
    frame[8:16, 0:8] = BEAM_COLOUR
    frame[8:16, 16:20] = BEAM_COLOUR  # half a cell: no beam cell
    assert zap_rates.beam_cells(frame) == 2
    with pytest.raises(SystemExit):
        zap_rates.main(["--substrates", "coins", "--device", "cpu"])
