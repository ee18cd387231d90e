"""Melting Pot's stamina (actionparty_env/stamina.py): counted as the Lua counts it, with predator_prey's
meals, refused where the real engine refuses, and obeyed by the dream."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from actionparty_env.games import get_game
from actionparty_env.grid import CELL, DIRS, PlayerStates
from actionparty_env.model.sampler import DreamSimulator, decide_codes
from actionparty_env.model.sprites import constrain_attached
from actionparty_env.stamina import (BAR_COLOURS, STAMINA, Stamina, StaminaState, bar_codes, bar_rows,
                                    eaten, meals, stamina_of, stamina_step)
from benchmarks.rules import FROZEN, RuleChecker
from tests.conftest import tiny_model

PREDATOR_PREY = STAMINA["predator_prey"]
NAMES = get_game("predator_prey__open").action_names
ACT = {name: i for i, name in enumerate(NAMES)}
TURN, EAST = ACT["TURN_RIGHT"], 1


def lua_stamina(rule: Stamina, times: tuple[int, int, int], costly: list[bool], alive: list[bool],
                ate: list[int] | None = None) -> list[bool]:
    """One player's freezes, transcribed line by line from the Lua (one plain loop): `Avatar:update`'s
    counter, `Stamina`'s applyStamina (priority 200), the move (150), the beam's meal (140: `ate` 1 a
    prey, 2 a predator; `AvatarEdible:onHit`) and updateStamina (4)."""
    value, skip, last_costly, counter, frozen = rule.max_value, 0, False, 0, []
    for cost, live, meal in zip(costly, alive, ate or [0] * len(costly)):
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
        if meal == 1:
            counter = rule.meal_freeze
        if meal == 2:
            value = max(value - rule.meal_cost, 0)
        if skip == 0:
            last_costly = cost
            value = max(value - 1, 0) if cost else min(value + 1, rule.max_value)
    return frozen


def counted(rule: Stamina, roles: tuple[str, ...], costly: np.ndarray, alive: np.ndarray,
            ate: np.ndarray | None = None) -> np.ndarray:
    """stamina_step over time for [T, N] arrays (`ate`: 1 ate a prey, 2 a predator, 0 neither)."""
    state = StaminaState.fresh(rule, (costly.shape[1],))
    ate = np.zeros(costly.shape, int) if ate is None else ate
    out = []
    for t in range(len(costly)):
        meal = (torch.as_tensor(ate[t] == 1), torch.as_tensor(ate[t] == 2))
        state, frozen = stamina_step(rule, rule.freeze_steps(roles), state, torch.as_tensor(costly[t]),
                                     torch.as_tensor(alive[t]), meal)
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


# ------------------------------------------------------------------------------- a predator's meal

def eater_frozen(value: int, costly: list[bool], alive: list[bool] | None = None) -> list[bool]:
    """A predator at stamina `value` that eats a prey at step 0 (no freeze under way): its refusals."""
    rule, n = PREDATOR_PREY, len(costly)
    zeros = torch.zeros(1, dtype=torch.long)
    state = StaminaState(zeros + value, zeros, zeros.bool(), zeros, zeros)
    out = []
    for t in range(n):
        ate = torch.tensor([t == 0])
        live = torch.tensor([True if alive is None else alive[t]])
        state, frozen = stamina_step(rule, rule.freeze_steps(("predator",)), state, torch.tensor([costly[t]]), live,
                                     (ate, torch.zeros(1, dtype=torch.bool)))
        out.append(bool(frozen))
    return out


def test_a_predator_that_eats_a_prey_is_refused_the_next_four_steps():
    # INTERACT, then a turn every step: green band, whose freeze is 0, leaves the meal's counter alone
    assert eater_frozen(18, [True] * 8) == [False] + [True] * 4 + [False] * 3


def test_the_stamina_freeze_after_the_meal_overwrites_its_counter():
    # The INTERACT was costly: the next step starts the band's freeze, which sets the same counter.
    assert eater_frozen(6, [True] + [False] * 5) == [False, True, False, False, False, False]  # yellow: 1
    assert eater_frozen(0, [True] + [False] * 8) == [False] + [True] * 6 + [False] * 2  # red: 6


def test_a_respawn_clears_the_meals_freeze():
    assert eater_frozen(18, [True] * 6, alive=[True, True, False, True, True, True]) == [False, True] + [False] * 4


def test_the_beam_stays_on_four_steps_after_a_meal_and_a_predators_meal_costs_four():
    rule, zeros = PREDATOR_PREY, torch.zeros(1, dtype=torch.bool)
    state, beams = StaminaState.fresh(rule, (1,)), []
    for t in range(6):
        state, _ = stamina_step(rule, rule.freeze_steps(("predator",)), state, torch.tensor([t == 0]),
                                torch.tensor([True]), (torch.tensor([t == 0]), zeros))
        beams.append(int(state.beam))
    assert beams == [4, 3, 2, 1, 0, 0]
    state, _ = stamina_step(rule, rule.freeze_steps(("predator",)), StaminaState.fresh(rule, (1,)),
                            torch.tensor([True]), torch.tensor([True]), (zeros, torch.tensor([True])))
    assert int(state.value) == 18 - 4 - 1 and int(state.counter) == 0 and int(state.beam) == 0  # and no freeze


def test_meals_credit_the_predator_whose_beam_covers_the_dying_player():
    """A 6 x 6 map: predator 0 at (2, 2) faces east, at prey 2 on (2, 3), which faces it; predator 1 at
    (4, 4) faces west, at predator 3 on (4, 3)."""
    predators = torch.tensor([True, True, False, True])
    cells = torch.tensor([[2, 2], [4, 4], [2, 3], [4, 3]])
    facing = torch.tensor([1, 3, 3, 0])
    alive = torch.ones(4, dtype=torch.bool)
    fresh = StaminaState.fresh(PREDATOR_PREY, (4,))

    def ate(interact: list[bool], dies: list[bool], state: StaminaState = fresh) -> tuple[list[bool], list[bool]]:
        prey, predator = meals(state, predators, torch.tensor(interact), cells, facing, alive, ~torch.tensor(dies),
                               6, 6)
        return prey.tolist(), predator.tolist()

    both = [True, True, False, False]
    assert ate(both, [False, False, True, True]) == ([True, False, False, False], [False, True, False, False])
    assert ate(both, [False] * 4) == ([False] * 4, [False] * 4)  # nobody died: a defended prey
    assert ate([False] * 4, [False, False, True, False]) == ([False] * 4, [False] * 4)  # no beam
    assert ate([False, False, True, False], [True, False, False, False]) == ([False] * 4, [False] * 4)  # prey: no beam
    beam = StaminaState(*fresh.fields()[:4], torch.tensor([2, 0, 0, 0]))  # on after a meal, with no INTERACT
    assert ate([False] * 4, [False, False, True, False], beam)[0] == [True, False, False, False]
    away = facing.clone()
    away[0] = 3
    prey, _ = meals(fresh, predators, torch.tensor(both), cells, away, alive, torch.tensor([1, 1, 0, 1]).bool(), 6, 6)
    assert not prey.any()  # its beam points elsewhere


def test_a_beam_eats_a_lone_prey_and_any_predator_but_not_a_defended_prey():
    """A 9 x 9 map: predator 0 at (2, 2) faces east, at prey 1 on (2, 3); prey 2 at (6, 6) and prey 3 at
    (6, 8) far off; predator 4 at (3, 2) faces north, at predator 0."""
    predators = torch.tensor([True, False, False, False, True])
    cells = torch.tensor([[2, 2], [2, 3], [6, 6], [6, 8], [3, 2]])
    facing = torch.tensor([1, 0, 0, 0, 0])
    alive = torch.ones(5, dtype=torch.bool)
    fresh = StaminaState.fresh(PREDATOR_PREY, (5,))

    def who(interact: list[bool], at: torch.Tensor = cells, state: StaminaState = fresh) -> list[bool]:
        red = state.value < PREDATOR_PREY.red
        return eaten(PREDATOR_PREY, state, red, predators, torch.tensor(interact), at, facing, alive, 9, 9).tolist()

    assert who([True, False, False, False, False]) == [False, True, False, False, False]  # a lone prey: eaten
    assert who([False] * 5) == [False] * 5  # no beam
    assert who([False, False, False, False, True]) == [True, False, False, False, False]  # a predator: always
    defended = cells.clone()
    defended[2] = torch.tensor([4, 4])  # prey 2 within 3 of prey 1 (distance sqrt 5): 2 prey, 2 predators near
    assert who([True, False, False, False, False], defended)[1]  # 2 prey <= 2 predators: eaten
    defended[3] = torch.tensor([2, 5])  # and prey 3 (distance 2): 3 prey > 2 predators
    assert not who([True, False, False, False, False], defended)[1]
    red = StaminaState(fresh.value.clone().index_fill_(0, torch.tensor([0]), 0), *fresh.fields()[1:])
    alone = cells.clone()
    alone[4] = torch.tensor([8, 0])  # predator 4 away: prey 1 and its red-band eater alone
    assert not who([True, False, False, False, False], alone, red)[1]  # the red predator does not count
    beam = StaminaState(*fresh.fields()[:4], torch.tensor([3, 0, 0, 0, 0]))  # left on after a meal
    assert who([False] * 5, cells, beam)[1]


def test_the_real_deaths_of_predator_prey_are_the_beams_meals():
    """The real engine (orchard, 13 players, until 6 deaths): at every step, who dies is who `eaten`
    says, from the cells and facing after the step and the replayed stamina."""
    from actionparty_env.real import MeltingPotEngine

    game = get_game("predator_prey__orchard")
    roles = game.player_roles(game.num_players)
    engine = MeltingPotEngine()
    step = engine.build(game.name, roles, 5)
    rng = np.random.default_rng(1)
    names = list(game.action_names)
    interact = names.index("INTERACT")
    predators, times = PREDATOR_PREY.predators(roles), PREDATOR_PREY.freeze_steps(roles)
    costly = PREDATOR_PREY.costly_actions(names)
    rows, cols = step.frame.shape[0] // 8, step.frame.shape[1] // 8
    state = StaminaState.fresh(PREDATOR_PREY, (len(roles),))
    deaths = 0
    for t in range(3000):  # until a few meals (the engine's spawns and facings are not all seeded)
        if deaths >= 6:
            break
        if step.done:  # the episode ended: a new one
            step, state = engine.build(game.name, roles, 6 + t), StaminaState.fresh(PREDATOR_PREY, (len(roles),))
        # Predators wander and INTERACT every other step on average; prey wander.
        wander = rng.integers(0, len(names), len(roles))
        acts = np.where(predators.numpy() & (rng.random(len(roles)) < 0.5), interact, wander)
        before = step.players
        step = engine.step(acts, frame=False)
        a = torch.as_tensor(acts, dtype=torch.long)
        cells, facing = torch.as_tensor(step.players.cells), torch.as_tensor(step.players.facing)
        alive, alive_next = torch.as_tensor(before.alive), torch.as_tensor(step.players.alive)
        died = alive & ~alive_next
        red = stamina_step(PREDATOR_PREY, times, state, costly[a], alive)[0].value < PREDATOR_PREY.red
        assert eaten(PREDATOR_PREY, state, red, predators, a == interact, cells, facing, alive, rows, cols).tolist() \
            == died.tolist(), t
        deaths += int(died.sum())
        ate = meals(state, predators, a == interact, cells, facing, alive, alive_next, rows, cols)
        state, _ = stamina_step(PREDATOR_PREY, times, state, costly[a], alive, ate)
    engine.close()
    assert deaths >= 6  # the check saw real meals


@pytest.mark.parametrize("head", [50.0, -50.0])
def test_in_predator_prey_the_beams_decide_deaths_not_the_alive_head(head):
    """A random model whose alive head says "live" (+50) or "die" (-50) for everyone: either way only
    the lone prey (player 3) in front of the INTERACTing predator 0 dies, where the predator's beam falls, and that
    predator gets the game's +1 for it, the other none, whatever the reward head says."""
    game = get_game("predator_prey__open")
    model = tiny_model(games=("predator_prey__open", "game_b"), action_vocab=list(game.action_names), move_head=True)
    with torch.no_grad():
        model.alive_head.weight.zero_()
        model.alive_head.bias.fill_(head)
    sim = DreamSimulator(model, "predator_prey__open", num_players=4, num_worlds=1, seed=0)
    assert game.player_roles(4)[3].startswith("prey") and all(r.startswith("predator") for r in game.player_roles(3))
    cells = torch.tensor([[[5, 5], [10, 1], [9, 9], [5, 6]]])  # prey 3 in front of predator 0, alone
    sim.reset_codes(torch.zeros(1, 12, 12, dtype=torch.long),
                    PlayerStates(cells, torch.tensor([[EAST, 0, 0, 0]]), torch.ones(1, 4, dtype=torch.bool)))
    out = sim.step(torch.tensor([[ACT["INTERACT"], ACT["INTERACT"], 0, 0]]))
    assert sim.players.alive[0].tolist() == [True, True, True, False]
    assert out.rewards[0, :3].tolist() == [1.0, 0.0, 0.0] and out.expected_rewards[0, :3].tolist() == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("family", sorted(STAMINA))
def test_the_count_is_the_luas_on_random_sequences(family):
    rule, rng = STAMINA[family], np.random.default_rng(0)
    roles = ("predator", "prey", "default")
    costly, alive = rng.random((300, 3)) < 0.7, rng.random((300, 3)) > 0.03
    ate = rng.choice(3, (300, 3), p=[0.9, 0.05, 0.05]) * (rule.meal_freeze > 0)  # only predator_prey's eat
    got = counted(rule, roles, costly, alive, ate)
    for i, role in enumerate(roles):
        times = next((f for part, f in rule.freeze_by_role if part in role), (0, 0, 0))
        assert got[:, i].tolist() == lua_stamina(rule, times, costly[:, i].tolist(), alive[:, i].tolist(),
                                                 ate[:, i].tolist())
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


# ------------------------------------------------------------------ meals in the real engine, on maps of our own

def engine_on(monkeypatch, ascii_map: str, roles: tuple[str, ...]):
    """The real predator_prey__open on `ascii_map` (its characters; `P`: a prey's spawn point on the
    floor). With one spawn point per player, only who stands where and the facings are drawn."""
    from actionparty_env import meltingpot_import
    from actionparty_env.real import MeltingPotEngine

    config = meltingpot_import.get_config

    def on_map(name: str):
        cfg = config(name).unlock()
        cfg.layout.ascii_map = ascii_map
        cfg.layout.char_prefab_map = dict(cfg.layout.char_prefab_map,
                                          P={"type": "all", "list": ["tiled_floor", "spawn_point_prey"]})
        return cfg.lock()

    monkeypatch.setattr(meltingpot_import, "get_config", on_map)
    engine = MeltingPotEngine()
    return engine, engine.build("predator_prey__open", roles, seed=0)


def play(engine, start, policy, steps: int) -> dict[str, np.ndarray]:
    """`steps` steps of `policy(t, state) -> actions [N]`: actions and rewards [T, N], cells [T+1, N, 2],
    facing and alive [T+1, N]."""
    out = {"actions": [], "rewards": [], "cells": [start.players.cells], "facing": [start.players.facing],
           "alive": [start.players.alive]}
    state = start
    for t in range(steps):
        actions = np.asarray(policy(t, state), np.int64)
        state = engine.step(actions, frame=False)
        out["actions"].append(actions)
        out["rewards"].append(state.rewards)
        for key in ("cells", "facing", "alive"):
            out[key].append(getattr(state.players, key))
    engine.close()
    return {key: np.stack(v) for key, v in out.items()}


def replayed(ep: dict[str, np.ndarray], roles: tuple[str, ...], rule: Stamina = PREDATOR_PREY) -> np.ndarray:
    """[T, N] the refusals the count gives for a played episode, meals read as the rule checker reads
    them (benchmarks/rules.py: after the step's moves)."""
    actions = torch.as_tensor(ep["actions"])
    cells, facing, alive = (torch.as_tensor(ep[key]) for key in ("cells", "facing", "alive"))
    costly, interact = rule.costly_actions(list(NAMES))[actions], actions == ACT["INTERACT"]
    state, frozen = StaminaState.fresh(rule, (actions.shape[1],)), []
    for t in range(len(actions)):
        ate = meals(state, rule.predators(roles), interact[t], cells[t + 1], facing[t + 1], alive[t], alive[t + 1],
                    16, 16)
        state, f = stamina_step(rule, rule.freeze_steps(roles), state, costly[t], alive[t], ate)
        frozen.append(f.numpy())
    return np.stack(frozen)


def refused(ep: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """([T, N] a move or turn did nothing, [T, N] the action is a move or a turn). The maps leave no
    wall or player in the way of the moves the policies take."""
    names = np.asarray(NAMES)[ep["actions"]]
    turns, moves = np.isin(names, ["TURN_LEFT", "TURN_RIGHT"]), np.isin(names, ["FORWARD", "BACKWARD"])
    kept_facing = ep["facing"][1:] == ep["facing"][:-1]
    kept_cell = (ep["cells"][1:] == ep["cells"][:-1]).all(-1)
    return (turns & kept_facing) | (moves & kept_cell), turns | moves


def died(ep: dict[str, np.ndarray]) -> list[tuple[int, int]]:
    """(step, player) of every death."""
    return [(int(t), int(i)) for t, i in zip(*np.nonzero(ep["alive"][:-1] & ~ep["alive"][1:]))]


PAIR = """
;_____,
!'''''|
!'XP''|
!'''''|
L~~~~~J
"""


@pytest.mark.parametrize("tiring", [0, 13, 30])
def test_the_real_engine_freezes_a_predator_that_eats_where_the_count_says(monkeypatch, tiring):
    """A predator next to a prey turns `tiring` times (then in the green, yellow or red band), turns to
    face it, INTERACTs, then turns every step; the prey never acts. The count (with the meal) gives
    exactly the real refusals; without the meal it does not, where the prey was eaten. A predator in the
    red band does not count as a predator near the prey, so a lone prey defends itself: no meal."""
    roles = ("predator", "prey")
    engine, start = engine_on(monkeypatch, PAIR, roles)
    ate_at: list[int] = []

    def policy(t: int, state) -> list[int]:
        if t >= tiring and not ate_at and state.players.facing[0] == EAST:
            ate_at.append(t)
            return [ACT["INTERACT"], 0]
        return [TURN, 0]

    ep = play(engine, start, policy, tiring + 24)
    real, acted = refused(ep)
    assert ate_at and (real[acted] == replayed(ep, roles)[acted]).all()
    no_meal = replayed(ep, roles, dataclasses.replace(PREDATOR_PREY, meal_freeze=0, meal_cost=0))
    if tiring < 30:
        assert died(ep) == [(ate_at[0], 1)] and (real[acted] != no_meal[acted]).any()
    else:
        assert died(ep) == []
    if tiring == 0:
        assert real[ate_at[0] + 1:ate_at[0] + 7, 0].tolist() == [True] * 4 + [False] * 2


COLUMN = """
;_______,
!'''''''|
!''XP'''|
!''XP'''|
!''XP'''|
!'''''''|
L~~~~~~~J
"""


def test_the_real_engine_keeps_an_eaters_beam_on_and_each_meal_freezes_again(monkeypatch):
    """Three predators (only the middle one acts: three prey near it need three predators to be eaten)
    and three prey in two columns: the middle predator eats the prey in front of it, then turns every
    step; the prey north of that one steps in at the next step, the one south of it 4 steps later. Both
    are eaten by the beam left on, with no INTERACT, and each meal freezes the eater again: refused for
    9 steps, as the count says."""
    roles = ("predator",) * 3 + ("prey",) * 3
    engine, start = engine_on(monkeypatch, COLUMN, roles)
    at = {tuple(c): i for i, c in enumerate(start.players.cells.tolist())}
    eater, north, south = at[(3, 3)], at[(2, 4)], at[(4, 4)]
    facing = {eater: EAST, north: 2, south: 0}
    begin: list[int] = []

    def policy(t: int, state) -> np.ndarray:
        actions = np.zeros(6, np.int64)
        if not begin:  # face as planned, then rest to full stamina
            turning = [i for i, f in facing.items() if state.players.facing[i] != f]
            actions[turning] = TURN
            if not turning:
                begin.append(t + 12)
            return actions
        k = t - begin[0]
        if k >= 0:
            actions[eater] = ACT["INTERACT"] if k == 0 else TURN
            actions[north] = ACT["FORWARD"] if k == 1 else 0
            actions[south] = ACT["FORWARD"] if k == 5 else 0
        return actions

    ep = play(engine, start, policy, 45)
    b = begin[0]
    assert died(ep) == sorted([(b, at[(3, 4)]), (b + 1, north), (b + 5, south)])
    assert ep["rewards"][b:b + 6, eater].tolist() == [1, 1, 0, 0, 0, 1]  # each prey eaten by it
    real, acted = refused(ep)
    assert real[b + 1:b + 11, eater].tolist() == [True] * 9 + [False]
    assert (real[acted] == replayed(ep, roles)[acted]).all()
    # The pixel benchmark's rule checker replays the same count from the episode.
    rules = RuleChecker(NAMES, substrate="predator_prey__open", roles=roles)
    frames = np.zeros((len(ep["cells"]), 7 * CELL, 9 * CELL, 3), np.uint8)
    assert ((rules.situation(dict(ep, frames=frames)) == FROZEN) == replayed(ep, roles)).all()


BESIDE = """
;_____,
!'''''|
!'XX''|
!'''''|
L~~~~~J
"""


def test_the_real_engine_costs_a_predator_that_eats_a_predator_four_stamina(monkeypatch):
    """Predator 0 eats predator 1 beside it, then turns every step: it tires 4 steps sooner than an
    INTERACT alone would have made it, and the meal itself does not freeze it."""
    roles = ("predator", "predator")
    engine, start = engine_on(monkeypatch, BESIDE, roles)
    toward = DIRS.index(tuple(int(d) for d in start.players.cells[1] - start.players.cells[0]))
    ate_at: list[int] = []

    def policy(t: int, state) -> list[int]:
        if not ate_at and state.players.facing[0] == toward:
            ate_at.append(t)
            return [ACT["INTERACT"], 0]
        return [TURN, 0]

    ep = play(engine, start, policy, 30)
    assert died(ep) == [(ate_at[0], 1)]
    real, acted = refused(ep)
    assert (real[acted] == replayed(ep, roles)[acted]).all()
    free = replayed(ep, roles, dataclasses.replace(PREDATOR_PREY, meal_cost=0))
    assert (real[acted] != free[acted]).any()
    assert not real[ate_at[0] + 1:ate_at[0] + 5, 0].any()  # no meal freeze


ACORN = """
;______,
!''''''|
!''P'A'|
!''''''|
L~~~~~~J
"""


def test_the_real_engine_lets_a_prey_eating_an_acorn_move(monkeypatch):
    """A prey steps onto an acorn (picks it up), rests so that its bar is invisible, INTERACTs (its meal:
    a third of 18 at 11, 16 and 21 steps after), then moves back and forth with a NOOP between moves:
    every move of the meal goes through, and the count (the stamina alone) gives every refusal."""
    roles = ("prey",)
    engine, start = engine_on(monkeypatch, ACORN, roles)
    begin: list[int] = []

    def policy(t: int, state) -> list[int]:
        if not begin:
            if state.players.facing[0] != EAST:
                return [TURN]
            if state.players.cells[0][1] < 5:
                return [ACT["FORWARD"]]
            begin.append(t + 8)
        k = t - begin[0]
        if k < 0:
            return [0]
        return [ACT["INTERACT"] if k == 0 else [ACT["FORWARD"], 0, ACT["BACKWARD"], 0][k % 4]]

    ep = play(engine, start, policy, 50)
    b = begin[0]
    assert (np.flatnonzero(ep["rewards"][:, 0]) - b).tolist() == [11, 16, 21]
    real, acted = refused(ep)
    assert acted[b + 1:b + 22, 0].sum() == 10 and not real[b + 1:b + 22, 0].any()
    assert (real[acted] == replayed(ep, roles)[acted]).all()


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


def test_the_dream_freezes_a_predator_whose_prey_dies_in_front_of_it(monkeypatch):
    """A random model whose alive head is replaced: the prey (player 3) dies at the first step, in front
    of predator 0, which INTERACTs and then turns every step. The dream counts the meal: the predator's
    next 4 turns are refused, later ones go through. With the prey dying elsewhere, nothing is eaten."""
    import actionparty_env.model.sampler as sampler

    game = get_game("predator_prey__open")
    model = tiny_model(games=("predator_prey__open", "game_b"), action_vocab=list(game.action_names), move_head=True)
    monkeypatch.setattr(sampler, "decide_alive", lambda *args: torch.tensor([[True, True, True, False]]))

    def turned(prey_cell: list[int]) -> list[bool]:
        sim = DreamSimulator(model, "predator_prey__open", num_players=4, num_worlds=1, seed=0)
        cells = torch.tensor([[[5, 5], [10, 1], [10, 10], prey_cell]])
        sim.reset_codes(torch.zeros(1, 12, 12, dtype=torch.long),
                        PlayerStates(cells, torch.tensor([[EAST, 0, 0, 0]]), torch.ones(1, 4, dtype=torch.bool)))
        out = []
        for action in [ACT["INTERACT"]] + [TURN] * 7:
            before = sim.players.facing[0, 0].clone()
            sim.step(torch.tensor([[action, 0, 0, 0]]))
            out.append(bool(sim.players.facing[0, 0] != before))
        return out

    assert turned([5, 6]) == [False] * 5 + [True] * 3
    assert turned([6, 5]) == [False] + [True] * 7


# ------------------------------------------------------------------------------- the stamina bar

def bar_patch(floor: int, level: int) -> np.ndarray:
    """An 8x8 patch of one grey `floor` with the config's bar of `level` (0..12) on its bottom row."""
    patch = np.full((8, 8, 3), floor, np.uint8)
    patch[7, 1:7] = bar_rows()[level]
    return patch


def test_bar_codes_are_the_configs_levels_over_anything():
    plain = np.full((8, 8, 3), 200, np.uint8)
    shifted = np.roll(bar_patch(200, 0), 1, axis=1)  # the red run one pixel off: not the bar
    patches = np.stack([plain, bar_patch(200, 0), bar_patch(90, 6), bar_patch(200, 12), shifted])
    assert bar_codes(patches).tolist() == [False, True, True, True, False]
    assert [tuple(c) for c in bar_rows()[0]] == [BAR_COLOURS["R"]] * 6
    assert [tuple(c) for c in bar_rows()[12]] == [BAR_COLOURS["G"]] * 6


def test_a_bar_left_behind_must_change_and_one_north_of_a_live_player_may_stay():
    """3 x 3 map, codes 0 = floor, 1 = floor with a bar. Player 0 moved from (1, 0) to (1, 1); player 1,
    at (2, 2), died; player 2 stands at (2, 0). The model wants the bar on the whole top two rows and
    no cell changes by chance (change_prob 0)."""
    rows, cols = 3, 3
    logits = torch.zeros(1, rows * cols, 2)
    logits[0, :6, 1] = 5.0
    cells = torch.tensor([[[1, 1], [2, 2], [2, 0]]])
    live = torch.tensor([[True, False, True]])
    ruled = constrain_attached(logits, torch.tensor([False, True]), cells, live, rows, cols, torus=False)
    prev = torch.tensor([[1, 1, 0, 0, 0, 1, 0, 0, 0]])  # bars at the old cell's north, the new one's, the dead's
    codes, _ = decide_codes(ruled, prev, torch.zeros(1, rows * cols), 0.0, None)
    # The bars left behind (north of the old cell and of the dead player) change; the live one stays.
    assert codes.view(rows, cols).tolist() == [[0, 1, 0], [0, 0, 0], [0, 0, 0]]
    bar_allowed = ruled[0, :, 1] > float("-inf")
    assert bar_allowed.nonzero().flatten().tolist() == [1, 3]  # north of player 0 and of player 2
    on_top = constrain_attached(logits, torch.tensor([False, True]), torch.tensor([[[0, 1]]]), live[:, :1],
                                rows, cols, torus=False)
    assert (on_top[0, :, 1] == float("-inf")).all()  # a player on the top row of a flat map has no bar cell
    wraps = constrain_attached(logits, torch.tensor([False, True]), torch.tensor([[[0, 1]]]), live[:, :1],
                               rows, cols, torus=True)
    assert (wraps[0, :, 1] > float("-inf")).tolist() == [i == 7 for i in range(rows * cols)]


def ghost_bars(sim: DreamSimulator, steps: int = 6) -> list[int]:
    """Per step of a dream from 4 players with their bars (code 1) north of them: the bar cells with no
    live player right south of them."""
    rows, cols = 8, 8
    cells = torch.tensor([[[3, 1], [3, 4], [6, 6], [1, 2]]] * 2)
    codes = torch.zeros(2, rows, cols, dtype=torch.long)
    codes[:, 2, 1] = codes[:, 2, 4] = codes[:, 5, 6] = codes[:, 0, 2] = 1
    sim.reset_codes(codes, PlayerStates(cells, torch.zeros(2, 4, dtype=torch.long), torch.ones(2, 4, dtype=torch.bool)))
    ghosts = []
    for s in range(steps):
        sim.step(torch.randint(0, 8, (2, 4), generator=torch.Generator().manual_seed(s)))
        south = torch.zeros(2, rows, cols, dtype=torch.bool)
        for w in range(2):
            for (r, c), live in zip(sim.players.cells[w].tolist(), sim.players.alive[w].tolist()):
                if live and r > 0:
                    south[w, r - 1, c] = True
        ghosts.append(int(((sim.codes == 1) & ~south).sum()))
    return ghosts


def test_the_dream_draws_a_bar_only_north_of_a_live_player():
    """A random model of predator_prey whose code 1 is a bar and whose cells never change by chance (its
    change head pinned to "no"): with the bar rule (it follows the sprite switch) no bar is ever left
    where no live player stands right south of it; without, the moving players leave theirs behind."""
    game = get_game("predator_prey__open")
    model = tiny_model(games=("predator_prey__open", "game_b"), action_vocab=list(game.action_names), move_head=True,
                       change_head=True)
    model.patches[1] = torch.from_numpy(bar_patch(200, 3))
    with torch.no_grad():
        model.change_head.weight.zero_()
        model.change_head.bias.fill_(-50.0)
    sim = DreamSimulator(model, "predator_prey__open", num_players=4, num_worlds=2, seed=0)
    assert sim.logits_hooks[-1] == sim.bar_rule and sim.bars.nonzero().flatten().tolist() == [int(sim.code_index[1])]
    assert DreamSimulator(model, "game_b", 4).logits_hooks == []
    free = DreamSimulator(model, "predator_prey__open", num_players=4, num_worlds=2, seed=0, consistent_sprites=False)
    assert free.logits_hooks == []
    assert sum(ghost_bars(sim)) == 0 and sum(ghost_bars(free)) > 0
