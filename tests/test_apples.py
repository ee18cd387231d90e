"""Commons harvest's apples by the game's rule (actionparty_env/apples.py), against the real engine and in
the dream."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from actionparty_env.apples import (APPLE_RED, APPLE_REGROWTH, FLOOR_PALETTE, GRASS_PALETTE, AppleRegrowth, AppleRule,
                                    AppleState, apple_codes, apple_step, live_neighbours, neighbourhood,
                                    regrowth_probability)
from actionparty_env.model.codebook import Codebook, unique_patches
from tests.real_engine import random_real_episode, substrate_config


@pytest.mark.parametrize("substrate", sorted(APPLE_REGROWTH))
def test_the_apples_facts_are_the_installed_configs(substrate):
    config, regrowth = substrate_config(substrate), APPLE_REGROWTH[substrate]
    assert regrowth.probabilities == tuple(config.REGROWTH_PROBABILITIES)
    assert regrowth.radius == config.APPLE_RESPAWN_RADIUS
    apple = config.create_apple_prefab(config.APPLE_RESPAWN_RADIUS, config.REGROWTH_PROBABILITIES)
    kwargs = {c["component"]: c.get("kwargs", {}) for c in apple["components"]}
    assert kwargs["Edible"]["rewardForEating"] == regrowth.reward
    assert kwargs["Appearance"]["palettes"][0]["*"][:3] == APPLE_RED
    grass = {c["component"]: c.get("kwargs", {}) for c in config.GRASS["components"]}["Appearance"]["palettes"][0]
    floor = {c["component"]: c.get("kwargs", {}) for c in config.FLOOR["components"]}["Appearance"]["palettes"][0]
    assert {v[:3] for v in grass.values()} == set(GRASS_PALETTE)
    assert {v[:3] for v in floor.values()} == set(FLOOR_PALETTE)


def test_live_neighbours_count_the_disc_of_radius_two_without_the_cell_itself():
    live = torch.zeros(1, 7, 7, dtype=torch.bool)
    live[0, 3, 3] = True
    counts = live_neighbours(live, neighbourhood(2.0))[0]
    near = [(r, c) for r in range(7) for c in range(7) if 0 < (r - 3) ** 2 + (c - 3) ** 2 <= 4]
    assert len(near) == 12 and all(counts[r, c] == 1 for r, c in near)
    assert counts.sum() == 12 and counts[3, 3] == 0  # (1, 2) away is sqrt(5) > 2: not near
    live[0] = True
    full = live_neighbours(live, neighbourhood(2.0))[0]
    assert full[3, 3] == 12 and full[0, 0] == 5  # a corner
    p = regrowth_probability(torch.tensor([0.0, 0.1, 0.2]), torch.tensor([0, 1, 2, 7]))
    assert p.tolist() == pytest.approx([0.0, 0.1, 0.2, 0.2])  # the last for more


def _hand_made():
    """A 1 x 5 strip: codes 0 apple, 1 grass, 2 floor, 3 a player's sprite; spots at cells 0-3."""
    patches = np.zeros((4, 8, 8, 3), np.uint8)
    patches[0] = GRASS_PALETTE[0]
    patches[0, 3, 3] = APPLE_RED
    patches[1] = GRASS_PALETTE[1]
    patches[2] = FLOOR_PALETTE[0]
    patches[3] = (45, 110, 220)
    codes = apple_codes(patches)
    is_player = torch.tensor([False, False, False, True])
    start = torch.tensor([[0, 0, 0, 0, 2]])
    return codes, is_player, AppleState.at_start(codes, start)


def test_a_player_stepping_onto_an_apple_eats_it_and_is_paid():
    codes, is_player, state = _hand_made()
    assert (codes.grass, codes.floor, codes.new_apple) == (1, 2, 0)
    assert state.spots.tolist() == [[True, True, True, True, False]]
    assert AppleState.at_start(codes, torch.tensor([[0, 1, 2, 3, 2]])).spots.tolist() == [[True, True, False, False, False]]
    frame = torch.tensor([[0, 0, 0, 0, 3]])  # the player stands at cell 4 and steps onto cell 3
    cells = torch.tensor([[[0, 3]]])
    rewards, after, shows = apple_step(AppleRule.of(APPLE_REGROWTH["commons_harvest__open"], codes), state, frame, is_player,
                                       cells, torch.tensor([[True]]), 1, 5, None, regrow=False)
    assert rewards.tolist() == [[1.0]]
    assert after.live.tolist() == [[True, True, True, False, False]]
    assert shows.tolist() == [[0, 0, 0, 1, -1]]  # the eaten spot shows grass: apples are near
    # a dead player eats nothing
    rewards, _, _ = apple_step(AppleRule.of(APPLE_REGROWTH["commons_harvest__open"], codes), state, frame, is_player, cells,
                               torch.tensor([[False]]), 1, 5, None, regrow=False)
    assert rewards.tolist() == [[0.0]]


def test_apples_regrow_only_near_apples_one_under_a_player_is_eaten_and_bare_spots_show_floor():
    codes, is_player, state = _hand_made()
    state = AppleState(state.spots, torch.tensor([[False, False, False, True, False]]))
    frame = torch.tensor([[1, 1, 2, 0, 2]])  # cells 0, 1 grass, cell 2 floor, cell 3 an apple
    every = AppleRegrowth((0.0, 1.0))  # any apple near: regrows for sure
    rewards, after, shows = apple_step(AppleRule.of(every, codes), state, frame, is_player, torch.tensor([[[0, 1]]]),
                                       torch.tensor([[True]]), 1, 5, torch.Generator().manual_seed(0))
    # cells 1 and 2 are within 2 of the apple at 3 and regrow; the one at 1 under the player is eaten at once;
    # cell 0 is 3 away: nothing near, it stays waiting (and shows grass: the new apple at 2 is near now)
    assert rewards.tolist() == [[1.0]]
    assert after.live.tolist() == [[False, False, True, True, False]]
    assert shows.tolist() == [[1, 1, 0, 0, -1]]
    # the last apple eaten: nothing is near any spot, none regrows, every spot shows the floor
    rewards, after, shows = apple_step(AppleRule.of(every, codes), state, torch.tensor([[1, 1, 1, 0, 2]]), is_player,
                                       torch.tensor([[[0, 3]]]), torch.tensor([[True]]), 1, 5,
                                       torch.Generator().manual_seed(0))
    assert rewards.tolist() == [[1.0]] and not after.live.any()
    assert shows.tolist() == [[2, 2, 2, 2, -1]]


@pytest.mark.slow
def test_the_apple_rule_pays_and_regrows_as_the_real_engine_does():
    """Real commons_harvest__open episodes, encoded: without regrowth the rule pays exactly the engine's
    rewards at every step but those where an apple regrew under a player (paid, never shown); the spots'
    apples and ground match the next real frame wherever no apple regrew; and the regrowths, counted
    by the number of apples near, happen at the config's rates."""
    substrate = "commons_harvest__open"
    regrowth = APPLE_REGROWTH[substrate]
    # Three episodes: the engine does not replay a seed, and one random episode ate from 20 to 77 apples.
    episodes = [random_real_episode(substrate, seed, 500) for seed in (1, 2, 3)]
    book = Codebook.from_patch_sets(unique_patches(f) for frames, *_ in episodes for f in frames)
    codes = apple_codes(book.patches)
    rule = AppleRule.of(regrowth, codes)
    regrown_unseen = eaten = ground_agrees = ground_seen = 0
    trials, regrown = np.zeros(len(regrowth.probabilities)), np.zeros(len(regrowth.probabilities))
    for frames, cells, alive, rewards in episodes:
        index = torch.from_numpy(np.stack([book.encode(f).reshape(-1) for f in frames]))  # [T+1, R*C]
        rows, cols = frames[0].shape[0] // 8, frames[0].shape[1] // 8
        flat = torch.from_numpy(cells[..., 0] * cols + cells[..., 1])
        # a player's sprites: the codes at live players' cells and nowhere else (a beam also covers players)
        at_player = torch.zeros_like(index, dtype=torch.bool).scatter_(1, flat, torch.from_numpy(alive))
        is_player = torch.zeros(len(book), dtype=torch.bool)
        is_player[index[at_player].unique()] = True
        is_player[index[~at_player].unique()] = False
        state = AppleState.at_start(codes, index[:1])
        assert int(state.spots.sum()) == 64  # the open map's 64 apples
        for t in range(len(rewards)):
            cell, live = torch.from_numpy(cells[t + 1])[None], torch.from_numpy(alive[t + 1])[None]
            paid, after, shows = apple_step(rule, state, index[t:t + 1], is_player, cell, live, rows, cols,
                                            None, regrow=False)
            real = torch.from_numpy(rewards[t])[None]
            off = paid != real
            # the only payoff the frames cannot show: an apple regrowing under a player, paid at once
            on_waiting_spot = state.spots.gather(1, flat[t + 1][None]) & ~paid.bool()
            assert (off <= (on_waiting_spot & (real == 1))).all(), (t, paid, real)
            regrown_unseen += int(off.sum())
            eaten += int(paid.sum())
            nxt = index[t + 1][None]
            now_apple = codes.apple[nxt] & after.spots
            sprouted = now_apple & ~after.live  # a regrowth the rule (without regrowth) did not draw
            ground = after.spots & ~is_player[nxt] & ~now_apple & ((nxt == codes.grass) | (nxt == codes.floor))
            ground_agrees += int((shows[ground] == nxt[ground]).sum())
            ground_seen += int(ground.sum())
            waiting = after.spots & ~after.live & ground | sprouted
            near = live_neighbours(after.live.view(1, rows, cols), rule.disc).view(1, -1)
            k = near.clamp(max=len(regrowth.probabilities) - 1)
            trials += np.bincount(k[waiting].numpy(), minlength=len(trials))
            regrown += np.bincount(k[sprouted].numpy(), minlength=len(trials))
            state = AppleState(after.spots, after.live | sprouted)
    assert ground_agrees > 0.99 * ground_seen, (ground_agrees, ground_seen)  # grass where an apple is near, else floor
    assert eaten > 40 and regrown_unseen < eaten / 3, (eaten, regrown_unseen)  # unseen regrowths: rare, maybe none
    expected = trials * np.asarray(regrowth.probabilities)
    assert regrown[0] <= 2 and trials[-1] > 1000, (regrown, trials)  # none where no apple is near (rare misses: beams)
    assert (np.abs(regrown - expected)[1:] < 4 * np.sqrt(expected[1:]) + 2).all(), (regrown, expected, trials)


def test_the_bundled_dream_eats_pays_and_regrows_apples_by_the_rule():
    """The bundled checkpoint's commons_harvest__open dream on the CPU, 2 worlds of random actions, apples
    regrowing at 0.2 wherever one is near: a player is paid +1 exactly when it steps onto a cell whose
    previous frame showed an apple, or (an apple regrown under it) when it is on a waiting spot; apples
    show on spots alone, vanish only where a player stepped or a beam passes, regrow only where one was
    near, at the rate (within 4 sd); a waiting spot shows grass where an apple is near, else floor."""
    from actionparty_env.env import DreamWorlds

    worlds = DreamWorlds("commons_harvest__open", num_worlds=2, device="cpu")
    worlds.reset([0, 1])
    sim = worlds.sim
    sim.apples = AppleRule.of(AppleRegrowth((0.0, 0.2)), sim.apples.codes)
    codes, (rows, cols), disc = sim.apples.codes, sim.codes.shape[1:], sim.apples.disc
    assert int(sim.apple_state.spots.sum()) == 2 * 64
    rng = np.random.default_rng(0)
    eaten = regrown = trials = 0
    for _ in range(30):
        before = sim.code_index[sim.codes.view(2, -1)]
        live_before = sim.apple_state.live.clone()
        result = sim.step(torch.as_tensor(rng.integers(0, 8, (2, 7))))
        after = sim.code_index[sim.codes.view(2, -1)]
        flat = result.players.cells[..., 0] * cols + result.players.cells[..., 1]
        alive = result.players.alive
        stepped_on_apple = codes.apple[before.gather(1, flat).clamp(min=0)] & alive
        on_spot = sim.apple_state.spots.gather(1, flat) & alive
        rewards = result.rewards
        assert set(rewards.unique().tolist()) <= {0.0, 1.0}
        assert (rewards[stepped_on_apple] == 1).all() and (rewards.bool() <= (stepped_on_apple | on_spot)).all()
        eaten += int(stepped_on_apple.sum())
        apple = codes.apple[after.clamp(min=0)]
        assert not (apple & ~sim.apple_state.spots).any()
        players = torch.zeros_like(apple).scatter_(1, flat, alive)
        seen = ~players & ((after == codes.grass) | (after == codes.floor) | apple)  # neither a player nor a beam
        gone = codes.apple[before.clamp(min=0)] & seen & ~apple
        assert not gone.any()  # an apple left alone stays
        near = live_neighbours(live_before.view(2, rows, cols), disc).view(2, -1)
        waiting = sim.apple_state.spots & ~live_before & seen & ~codes.apple[before.clamp(min=0)]
        new = waiting & apple
        assert not (new & (near == 0)).any()
        regrown += int(new.sum())
        trials += int((waiting & (near > 0)).sum())
        ground = sim.apple_state.spots & seen & ~apple
        after_near = live_neighbours(sim.apple_state.live.view(2, rows, cols), disc).view(2, -1)
        assert torch.equal(after[ground], torch.where(after_near[ground] > 0, codes.grass, codes.floor))
    assert eaten > 3 and trials > 100, (eaten, trials)
    expected, sd = 0.2 * trials, (0.2 * 0.8 * trials) ** 0.5
    assert abs(regrown - expected) < 4 * sd + 2, (regrown, expected)


def test_the_apples_state_is_part_of_the_recorded_steps_state():
    """`_step_state` (what a recorded CUDA graph carries from replay to replay) holds the apples' state:
    loading a copy of it with the generator's state replays the same steps, rewards and apples alike."""
    from actionparty_env.env import DreamWorlds

    from actionparty_env.model.network import KVCache

    worlds = DreamWorlds("commons_harvest__open", num_worlds=2, device="cpu")
    sim = worlds.sim
    cfg = sim.model.cfg  # the KV cache a recorded step uses (static shapes), without recording
    sim._new_cache = lambda: KVCache(cfg.depth, cfg.window, sim.model.rope, static=True)
    worlds.reset([0, 1])
    sim.apples = AppleRule.of(AppleRegrowth((0.0, 0.3)), sim.apples.codes)  # regrowth often, so a lost state would show
    g = torch.Generator().manual_seed(0)
    steady = cfg.window + 1  # the window full: the state a graph is recorded in
    actions = [torch.randint(0, 8, (2, 7), generator=g) for _ in range(steady + 3)]
    for a in actions[:steady]:
        sim.step(a)
    state = sim._step_state()
    assert any(t is sim.apple_state.spots for t in state) and any(t is sim.apple_state.live for t in state)
    saved, rng = [t.clone() for t in state], sim.generator.get_state()
    first = [(sim.step(a), sim.apple_state.live.clone()) for a in actions[steady:]]
    sim._load_step_state([t.clone() for t in saved])
    sim.generator.set_state(rng)
    again = [(sim.step(a), sim.apple_state.live.clone()) for a in actions[steady:]]
    for (one, live_one), (two, live_two) in zip(first, again):
        assert torch.equal(one.frames, two.frames) and torch.equal(one.rewards, two.rewards)
        assert torch.equal(live_one, live_two)
