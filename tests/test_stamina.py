"""Melting Pot's stamina (actionparty_env/stamina.py): counted as the Lua counts it, refused where the real
engine refuses, and obeyed by the dream."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from actionparty_env.games import get_game
from actionparty_env.grid import PlayerStates
from actionparty_env.model.sampler import DreamSimulator
from actionparty_env.stamina import STAMINA, Stamina, StaminaState, stamina_of, stamina_step
from tests.conftest import tiny_model

PREDATOR_PREY = STAMINA["predator_prey"]


def lua_stamina(rule: Stamina, times: tuple[int, int, int], costly: list[bool], alive: list[bool]) -> list[bool]:
    """One player's freezes, transcribed line by line from the Lua's `Stamina:update` (one plain loop)."""
    value, skip, last_costly, counter, frozen = rule.max_value, 0, False, 0, []
    for cost, live in zip(costly, alive):
        if not live:
            value, skip, last_costly, counter = rule.max_value, 0, False, 0
            frozen.append(False)
            continue
        counter = max(counter - 1, 0)
        if skip > 0:
            skip -= 1
        else:
            band = 2 if value < rule.red else 1 if value < rule.red + rule.yellow else 0
            if last_costly and times[band] > 0:
                counter = skip = times[band]
        frozen.append(counter > 0)
        if skip == 0:
            last_costly = cost
            value = max(value - 1, 0) if cost else min(value + 1, rule.max_value)
    return frozen


def counted(rule: Stamina, roles: tuple[str, ...], costly: np.ndarray, alive: np.ndarray) -> np.ndarray:
    """stamina_step over time for [T, N] arrays."""
    state = StaminaState.fresh(rule, (costly.shape[1],))
    out = []
    for t in range(len(costly)):
        state, frozen = stamina_step(rule, rule.freeze_steps(roles), state, torch.as_tensor(costly[t]),
                                     torch.as_tensor(alive[t]))
        out.append(frozen.numpy())
    return np.stack(out)


def test_a_prey_acting_every_step_is_refused_every_other_step():
    frozen = counted(PREDATOR_PREY, ("prey",), np.ones((8, 1), bool), np.ones((8, 1), bool))[:, 0]
    assert frozen.tolist() == [False, True] * 4


def test_a_predator_tires_after_twelve_costly_steps():
    frozen = counted(PREDATOR_PREY, ("predator",), np.ones((16, 1), bool), np.ones((16, 1), bool))[:, 0]
    # 18 -> 6 after 12 costly steps: the yellow band's 1-step freeze, then every other step
    assert frozen.tolist() == [False] * 12 + [True, False, True, False]


def test_a_respawn_restores_the_stamina():
    alive = np.ones((16, 1), bool)
    alive[12] = False
    frozen = counted(PREDATOR_PREY, ("predator",), np.ones((16, 1), bool), alive)[:, 0]
    assert not frozen[12:].any()


@pytest.mark.parametrize("family", sorted(STAMINA))
def test_the_count_is_the_luas_on_random_sequences(family):
    rule, rng = STAMINA[family], np.random.default_rng(0)
    roles = ("predator", "prey", "default")
    costly, alive = rng.random((300, 3)) < 0.7, rng.random((300, 3)) > 0.03
    got = counted(rule, roles, costly, alive)
    for i, role in enumerate(roles):
        times = next((f for part, f in rule.freeze_by_role if part in role), (0, 0, 0))
        assert got[:, i].tolist() == lua_stamina(rule, times, costly[:, i].tolist(), alive[:, i].tolist())
    assert got.any()  # the sequences do freeze someone


def test_only_predator_prey_and_factory_commons_have_stamina():
    assert stamina_of("predator_prey__orchard") is PREDATOR_PREY
    assert stamina_of("factory_commons__either_or") is STAMINA["factory_commons"]
    assert stamina_of("clean_up") is None and stamina_of("commons_harvest__open") is None


def test_the_real_engine_refuses_turns_where_the_count_says():
    """Every player of the real predator_prey__open turns right every step: nothing but the stamina can
    refuse a turn (no wall or player blocks one, and without INTERACT nobody is eaten)."""
    from actionparty_env.real import RealParallelEnv

    game = get_game("predator_prey__open")
    env = RealParallelEnv("predator_prey__open", max_cycles=100)
    _, infos = env.reset(seed=3)
    turn = game.action_names.index("TURN_RIGHT")
    facing = [np.array([infos[a]["facing"] for a in env.agents])]
    for _ in range(30):
        _, _, _, _, infos = env.step({a: turn for a in env.agents})
        facing.append(np.array([infos[a]["facing"] for a in env.agents]))
        assert all(infos[a]["alive"] for a in env.agents)
    env.close()
    real_refused = np.stack([f1 == f0 for f0, f1 in zip(facing[:-1], facing[1:])])
    roles = game.player_roles(game.num_players)
    count = counted(PREDATOR_PREY, roles, np.ones(real_refused.shape, bool), np.ones(real_refused.shape, bool))
    assert (real_refused == count).all()
    assert real_refused.any() and not real_refused.all()  # the case tests both outcomes


def test_the_dream_refuses_what_the_stamina_refuses_and_follows_the_rest():
    """A random model under the stamina rule: 3 predators and a prey step FORWARD and turn as the count
    says, whatever the model's move and facing heads say (their alive head pinned to "alive")."""
    game = get_game("predator_prey__open")
    model = tiny_model(games=("predator_prey__open", "game_b"), action_vocab=list(game.action_names), move_head=True)
    with torch.no_grad():
        model.alive_head.weight.zero_()
        model.alive_head.bias.fill_(50.0)
    sim = DreamSimulator(model, "predator_prey__open", num_players=4, num_worlds=1, seed=0)
    rows, cols = 12, 12
    codes = torch.zeros(1, rows, cols, dtype=torch.long)
    start = PlayerStates(torch.tensor([[[10, 1], [10, 4], [10, 7], [10, 10]]]), torch.zeros(1, 4, dtype=torch.long),
                         torch.ones(1, 4, dtype=torch.bool))
    sim.reset_codes(codes, start)
    forward, turn = game.action_names.index("FORWARD"), game.action_names.index("TURN_RIGHT")
    plan = [forward] * 8 + [turn] * 8
    roles = game.player_roles(4)
    frozen = counted(PREDATOR_PREY, roles, np.ones((16, 4), bool), np.ones((16, 4), bool))
    before = start
    for t, action in enumerate(plan):
        sim.step(torch.full((1, 4), action))
        now = sim.players
        moved = (now.cells != before.cells).any(-1)[0].numpy()
        turned = (now.facing != before.facing)[0].numpy()
        if action == forward:
            assert (moved == ~frozen[t]).all() and not turned.any(), t
        else:
            assert (turned == ~frozen[t]).all() and not moved.any(), t
        before = now
    assert frozen[:, 3].any()  # the prey was refused in the plan
