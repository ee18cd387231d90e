"""How Melting Pot moves avatars, checked against the real engine, and `actionparty_env.grid`'s
`resolve_moves` / `moved_cells` / `move_class` on hand-made cases.

The rule (grid.py's module doc, from avatar_library.lua and dmlab2d's grid.cc): each step every
avatar's move is queued in a freshly shuffled order and applied one after another; a move into a
cell that holds another piece on the avatar's layer (a player, a wall) at its turn does nothing.

Real-engine tests steer players into position from a real reset with ordinary actions (`Driver`),
then repeat one situation many times in one episode (each repetition ends by walking back into the
set-up) and compare what the engine did with `resolve_moves` over every update order: the real
outcome must be one that `resolve_moves` gives for some order, and where the engine is random, every
outcome `resolve_moves` allows must have occurred, at about the frequency a uniform order gives. The
engine's order is NOT reproducible across processes for one seed (coins, seed 0: two different
sequences of chain outcomes over 8 fresh processes, 5 vs 3), so the frequency bounds are loose (about
4 standard deviations) rather than exact counts. The engine needs Melting Pot (the project's venv).
"""
from __future__ import annotations

import itertools
from collections import Counter, deque

import numpy as np
import pytest
import torch

from actionparty_env.grid import DIRS, JUMP, MOVES, NUM_MOVES, STAY, move_class, moved_cells, resolve_moves

E, S, W, N = 1, 2, 3, 0
FWD = 1 + MOVES["FORWARD"]  # the movement classes of the step actions


# --------------------------------------------------------------------------------------------------
# resolve_moves over every order
# --------------------------------------------------------------------------------------------------

def resolve_all(cells, targets, live=None, rows=9, cols=9) -> dict[tuple, tuple]:
    """resolve_moves for every update order of the players at once: {order: new cells (tuples)}."""
    cells = torch.tensor(cells, dtype=torch.long)
    targets = torch.tensor(targets, dtype=torch.long)
    n = len(cells)
    live = torch.ones(n, dtype=torch.bool) if live is None else torch.tensor(live)
    orders = list(itertools.permutations(range(n)))
    b = len(orders)
    new = resolve_moves(cells.expand(b, n, 2), targets.expand(b, n, 2), live.expand(b, n),
                        torch.tensor(orders), rows, cols)
    return {o: tuple(map(tuple, new[k].tolist())) for k, o in enumerate(orders)}


def outcomes(cells, targets, live=None, rows=9, cols=9) -> Counter:
    """How many update orders give each outcome."""
    return Counter(resolve_all(cells, targets, live, rows, cols).values())


def sequential(cells, targets, live, order):
    """A plain-Python statement of the rule, to check the tensor code against."""
    now = [tuple(c) for c in cells]
    for i in order:
        held = {now[j] for j in range(len(now)) if live[j] and j != i}
        if live[i] and tuple(targets[i]) not in held:
            now[i] = tuple(targets[i])
    return now


# --------------------------------------------------------------------------------------------------
# Hand-made cases
# --------------------------------------------------------------------------------------------------

def test_two_players_into_one_cell_the_first_in_the_order_wins():
    a, b, x = (2, 1), (2, 3), (2, 2)
    res = resolve_all([a, b], [x, x])
    assert res[(0, 1)] == (x, b) and res[(1, 0)] == (a, x)


def test_chain_of_three_moves_as_far_as_the_order_has_vacated():
    cells = [(1, 1), (1, 2), (1, 3)]  # A behind B behind C, all moving east into free floor
    targets = [(1, 2), (1, 3), (1, 4)]
    res = resolve_all(cells, targets)
    assert res[(2, 1, 0)] == ((1, 2), (1, 3), (1, 4))  # front first: everyone moves
    assert res[(0, 1, 2)] == ((1, 1), (1, 2), (1, 4))  # back first: only the front one moves
    assert res[(2, 0, 1)] == ((1, 1), (1, 3), (1, 4))  # C, then A (blocked by B), then B
    assert outcomes(cells, targets) == Counter({((1, 1), (1, 2), (1, 4)): 3, ((1, 1), (1, 3), (1, 4)): 2,
                                                ((1, 2), (1, 3), (1, 4)): 1})


def test_swap_and_rotation_always_fail():
    a, b = (3, 3), (3, 4)
    assert outcomes([a, b], [b, a]) == Counter({(a, b): 2})
    square = [(1, 1), (1, 2), (2, 2), (2, 1)]  # four players rotating clockwise round a 2x2 block
    assert outcomes(square, square[1:] + square[:1]) == Counter({tuple(square): 24})


def test_standing_players_block_and_stay():
    a, b = (4, 4), (4, 5)
    assert outcomes([a, b], [b, b]) == Counter({(a, b): 2})  # B stays (target = own cell): A blocked


def test_dead_players_hold_no_cell_and_do_not_move():
    a, dead = (2, 2), (2, 3)
    # A walks into the dead player's (meaningless) cell; the dead player's own wish is ignored.
    assert outcomes([a, dead], [dead, (2, 4)], live=[True, False]) == Counter({(dead, dead): 2})
    # Two dead players parked on one cell do not block anyone either.
    res = outcomes([a, dead, dead], [dead, dead, dead], live=[True, False, False])
    assert res == Counter({(dead, dead, dead): 6})


def test_torus_wrap():
    rows, cols = 5, 6
    cells = torch.tensor([[0, 0], [4, 5]])
    facing = torch.tensor([N, E])
    fwd = torch.full((2,), FWD)
    wrapped = moved_cells(cells, facing, fwd, rows, cols, torus=True)
    assert wrapped.tolist() == [[4, 0], [4, 0]]  # north off the top, east off the right edge
    assert moved_cells(cells, facing, fwd, rows, cols, torus=False).tolist() == cells.tolist()  # bounded: stay
    assert move_class(cells, facing, wrapped, rows, cols, torus=True).tolist() == [FWD, FWD]
    assert move_class(cells, facing, wrapped, rows, cols, torus=False).tolist() == [JUMP, JUMP]
    # Both want the same wrapped cell: one order each; a player standing there blocks both.
    assert outcomes(cells.tolist(), wrapped.tolist(), rows=rows, cols=cols) == Counter(
        {((4, 0), (4, 5)): 1, ((0, 0), (4, 0)): 1})
    assert outcomes([[0, 0], [4, 0]], [[4, 0], [4, 0]], rows=rows, cols=cols) == Counter({((0, 0), (4, 0)): 2})


def test_moved_cells_and_move_class_are_inverse():
    rows, cols = 7, 7
    facing, move = torch.meshgrid(torch.arange(4), torch.arange(NUM_MOVES), indexing="ij")
    cells = torch.full((*facing.shape, 2), 3)
    nxt = moved_cells(cells, facing, move, rows, cols)
    expect = torch.where(move == JUMP, STAY, move)  # JUMP keeps the cell (its cell comes from elsewhere)
    assert torch.equal(move_class(cells, facing, nxt, rows, cols), expect)
    # STEP_RIGHT of a player facing east is south; BACKWARD of one facing north is south.
    assert nxt[E, 1 + MOVES["STEP_RIGHT"]].tolist() == [4, 3] and nxt[N, 1 + MOVES["BACKWARD"]].tolist() == [4, 3]
    far = torch.tensor([5, 3])
    assert move_class(torch.tensor([3, 3]), torch.tensor(N), far, rows, cols).item() == JUMP


def test_resolve_moves_random_cases_match_the_plain_rule():
    g = torch.Generator().manual_seed(0)
    rows, cols, n, b = 4, 4, 6, 300
    cells = torch.stack([torch.randperm(rows * cols, generator=g)[:n] for _ in range(b)])
    cells = torch.stack([cells // cols, cells % cols], -1)
    facing = torch.randint(4, (b, n), generator=g)
    move = torch.randint(NUM_MOVES - 1, (b, n), generator=g)  # STAY or a step
    targets = moved_cells(cells, facing, move, rows, cols)
    live = torch.rand(b, n, generator=g) < 0.8
    order = torch.rand(b, n, generator=g).argsort(-1)
    new = resolve_moves(cells, targets, live, order, rows, cols)
    for k in range(b):
        want = sequential(cells[k].tolist(), targets[k].tolist(), live[k].tolist(), order[k].tolist())
        assert [tuple(c) for c in new[k].tolist()] == want
        held = [tuple(c) for c, a in zip(new[k].tolist(), live[k].tolist()) if a]
        assert len(held) == len(set(held))  # two live players never share a cell


# --------------------------------------------------------------------------------------------------
# The real engine
# --------------------------------------------------------------------------------------------------

REL_STEP = {0: "FORWARD", 1: "STEP_RIGHT", 2: "BACKWARD", 3: "STEP_LEFT"}  # by (direction - facing) % 4


def add(cell, d, k=1):
    return cell[0] + k * DIRS[d][0], cell[1] + k * DIRS[d][1]


class Driver:
    """One real env, steered with ordinary actions. The walls come from the substrate's ASCII map
    (built with the same seed as the engine); players are the only other pieces on the avatar layer
    in the substrates used here (coins, commons_harvest__open)."""

    def __init__(self, env, seed: int):
        from actionparty_env.games import get_game
        from actionparty_env.real import build_lab2d_settings

        self.env = env
        self.index = {name: i for i, name in enumerate(get_game(env.substrate).action_names)}
        _, self.infos = env.reset(seed=seed)
        _, settings = build_lab2d_settings(env.substrate, env.roles, seed)
        lines = settings.simulation.map.strip("\n").split("\n")
        self.chars = {(r, c): ch for r, line in enumerate(lines) for c, ch in enumerate(line)}
        start = [self.cell(a) for a in env.agents]
        self.floor = self._reachable(start)  # the walkable region (coins' map has blank margins)

    # state
    def cell(self, agent):
        return tuple(self.infos[agent]["cell"])

    def facing(self, agent):
        return int(self.infos[agent]["facing"])

    def alive(self, agent):
        return bool(self.infos[agent]["alive"])

    def wall(self, cell):
        return self.chars.get(cell, "W") == "W"

    def held(self, but=()):
        return {self.cell(a) for a in self.env.agents if a not in but and self.alive(a)}

    def _reachable(self, start):
        seen, todo = set(start), deque(start)
        while todo:
            cell = todo.popleft()
            for d in range(4):
                nxt = add(cell, d)
                if nxt not in seen and not self.wall(nxt):
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    # acting
    def step(self, **actions):
        """One env step; players not named do NOOP."""
        acts = {a: self.index[actions.get(a, "NOOP")] for a in self.env.agents}
        _, _, term, trunc, self.infos = self.env.step(acts)
        assert not any(term.values()) and not any(trunc.values()), "episode ended during a test"
        return self.infos

    def path(self, agent, goal):
        """Directions of a shortest walk from the agent's cell to `goal` around walls and players."""
        blocked = self.held(but=(agent,))
        start = self.cell(agent)
        back, todo = {start: None}, deque([start])
        while todo:
            cell = todo.popleft()
            if cell == goal:
                break
            for d in range(4):
                nxt = add(cell, d)
                if nxt in self.floor and nxt not in blocked and nxt not in back:
                    back[nxt] = (cell, d)
                    todo.append(nxt)
        if goal not in back:
            return None
        dirs, cell = [], goal
        while back[cell] is not None:
            cell, d = back[cell]
            dirs.append(d)
        return dirs[::-1]

    def walk(self, agent, d):
        """Step `agent` one cell in absolute direction d (keeping its facing); assert it went."""
        before = self.cell(agent)
        self.step(**{agent: REL_STEP[(d - self.facing(agent)) % 4]})
        assert self.cell(agent) == add(before, d), f"{agent} failed to walk {d} from {before}"

    def turn_to(self, agent, facing):
        while self.facing(agent) != facing:
            self.step(**{agent: "TURN_RIGHT" if (facing - self.facing(agent)) % 4 != 3 else "TURN_LEFT"})

    def arrange(self, placement: dict):
        """Walk each named agent to its (cell, facing), one at a time (the others stand still)."""
        for _ in range(4 * len(placement)):
            todo = [a for a, (cell, _) in placement.items() if self.cell(a) != cell]
            if not todo:
                break
            moved = False
            for agent in todo:
                goal = placement[agent][0]
                while self.cell(agent) != goal and goal not in self.held(but=(agent,)):
                    route = self.path(agent, goal)  # planned afresh each step (respawns may appear)
                    if not route:
                        break
                    self.walk(agent, route[0])
                    moved = True
            if not moved:  # a named player stands on another's goal: step it aside
                goals = {cell for cell, _ in placement.values()}
                holder = next(a for a in placement if self.cell(a) in goals and self.cell(a) != placement[a][0])
                d = next(d for d in range(4) if add(self.cell(holder), d) in self.floor - goals - self.held())
                self.walk(holder, d)
        for agent, (cell, facing) in placement.items():
            assert self.cell(agent) == cell, f"could not place {agent} at {cell}"
            self.turn_to(agent, facing)

    def spot(self, offsets, near, ok=lambda anchor: True):
        """An anchor such that anchor + every offset is free floor (no wall, no other live player),
        the nearest to the agents in `near` (so that arranging them is short)."""
        others = self.held(but=near)
        centre = np.mean([self.cell(a) for a in near], 0)
        anchors = sorted(self.floor, key=lambda c: (abs(c[0] - centre[0]) + abs(c[1] - centre[1]), c))
        for anchor in anchors:
            cells = [(anchor[0] + dr, anchor[1] + dc) for dr, dc in offsets]
            if all(c in self.floor and c not in others for c in cells) and ok(anchor):
                return anchor
        raise AssertionError("no spot for the set-up")


def real_step_outcomes(cells, facing, actions, walls=()) -> Counter:
    """What resolve_moves allows for the engine's situation: the players' targets from
    `moved_cells` (a move into a wall is wall-resolved to the own cell first: resolve_moves knows
    only players), then every update order."""
    move = torch.tensor([1 + MOVES[a] if a in MOVES else STAY for a in actions])
    cells_t = torch.tensor(cells)
    targets = moved_cells(cells_t, torch.tensor(facing), move, 1000, 1000).tolist()
    targets = [tuple(c) if tuple(t) in walls else tuple(t) for c, t in zip(cells, targets)]
    return outcomes([tuple(c) for c in cells], targets, rows=1000, cols=1000)


@pytest.fixture(scope="module")
def coins():
    pytest.importorskip("dmlab2d")
    from actionparty_env import real_parallel_env

    env = real_parallel_env("coins", max_cycles=1000)
    yield env
    env.close()


@pytest.fixture(scope="module")
def commons():
    pytest.importorskip("dmlab2d")
    from actionparty_env import real_parallel_env

    env = real_parallel_env("commons_harvest__open", max_cycles=1000)  # 7 players: zaps and respawns
    yield env
    env.close()


def repeat(drv, agents, actions, times, restore):
    """Take `actions` from the arranged set-up `times` times; `restore(before)` walks back."""
    seen = Counter()
    for _ in range(times):
        before = [drv.cell(a) for a in agents]
        facing = [drv.facing(a) for a in agents]
        drv.step(**dict(zip(agents, actions)))
        after = tuple(drv.cell(a) for a in agents)
        assert [drv.facing(a) for a in agents] == facing  # moves never turn
        seen[after] += 1
        restore(before)
        assert [drv.cell(a) for a in agents] == before
    return seen


def walk_back(drv, agents, before):
    """Step every displaced agent BACKWARD into its cell of `before`, each once its cell is free."""
    for _ in agents:
        for a, cell in zip(agents, before):
            if drv.cell(a) != cell and cell not in drv.held(but=(a,)):
                drv.step(**{a: "BACKWARD"})


# The counts over every seed: {situation: Counter(outcome name -> times)}, printed with -s.
COUNTS: dict = {}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_real_two_players_into_one_free_cell(coins, seed):
    """A at (r, c-1) facing E, B at (r, c+1) facing W, both FORWARD: exactly one gets the cell."""
    drv = Driver(coins, seed)
    a, b = coins.possible_agents
    x = drv.spot([(0, -1), (0, 0), (0, 1)], near=(a, b))
    drv.arrange({a: (add(x, W), E), b: (add(x, E), W)})
    allowed = real_step_outcomes([add(x, W), add(x, E)], [E, W], ["FORWARD", "FORWARD"])
    seen = repeat(drv, (a, b), ("FORWARD", "FORWARD"), 60, lambda before: walk_back(drv, (a, b), before))
    assert set(seen) == set(allowed) == {(x, add(x, E)), (add(x, W), x)}  # both outcomes, no other
    assert 15 <= seen[(x, add(x, E))] <= 45  # a fair coin: one of the two orders per step
    COUNTS.setdefault("contest: A gets the cell", Counter())[seed] += seen[(x, add(x, E))]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_real_chain_moves_only_when_the_front_goes_first(coins, seed):
    """A directly behind B, both facing the same way, both FORWARD into free floor."""
    drv = Driver(coins, seed)
    a, b = coins.possible_agents
    d = (E, S, W, N)[seed]
    offsets = [(k * DIRS[d][0], k * DIRS[d][1]) for k in range(3)]
    x = drv.spot(offsets, near=(a, b))
    drv.arrange({a: (x, d), b: (add(x, d), d)})
    allowed = real_step_outcomes([x, add(x, d)], [d, d], ["FORWARD", "FORWARD"])
    both, front = (add(x, d), add(x, d, 2)), (x, add(x, d, 2))
    seen = repeat(drv, (a, b), ("FORWARD", "FORWARD"), 60, lambda before: walk_back(drv, (b, a), before[::-1]))
    assert set(seen) == set(allowed) == {both, front}
    assert 15 <= seen[both] <= 45
    COUNTS.setdefault("chain: both move", Counter())[seed] += seen[both]


@pytest.mark.parametrize("seed", [0, 1])
def test_real_blocked_by_a_standing_player_or_a_swap(coins, seed):
    """Into a player who stands (NOOP or turns), and two players into each other's cells: no move."""
    drv = Driver(coins, seed)
    a, b = coins.possible_agents
    x = drv.spot([(0, 0), (0, 1)], near=(a, b))
    drv.arrange({a: (x, E), b: (add(x, E), W)})
    for act in ("NOOP", "TURN_LEFT", "TURN_RIGHT"):  # B stands (a turn is no move); A walks into it
        for _ in range(10):
            drv.step(**{a: "FORWARD", b: act})
            assert (drv.cell(a), drv.cell(b)) == (x, add(x, E))
    drv.turn_to(b, W)
    allowed = real_step_outcomes([x, add(x, E)], [E, W], ["FORWARD", "FORWARD"])
    assert allowed == Counter({(x, add(x, E)): 2})
    seen = repeat(drv, (a, b), ("FORWARD", "FORWARD"), 30, lambda before: None)  # the swap
    assert seen == Counter({(x, add(x, E)): 30})
    # B into a wall, A behind it into B's cell: B never leaves, so A never moves.
    y = drv.spot([(0, 0), (0, 1)], near=(a, b), ok=lambda c: drv.wall(add(c, E, 2)))
    drv.arrange({a: (y, E), b: (add(y, E), E)})
    allowed = real_step_outcomes([y, add(y, E)], [E, E], ["FORWARD", "FORWARD"], walls={add(y, E, 2)})
    assert allowed == Counter({(y, add(y, E)): 2})
    seen = repeat(drv, (a, b), ("FORWARD", "FORWARD"), 20, lambda before: None)
    assert seen == Counter({(y, add(y, E)): 20})


def test_real_single_steps_and_walls(coins):
    """Every step action from every facing goes where moved_cells says (move_class inverts it), and
    into a wall stays, facing unchanged."""
    drv = Driver(coins, 3)
    a, b = coins.possible_agents
    x = drv.spot([(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)], near=(a,))
    drv.arrange({a: (x, N)})
    for f in range(4):
        drv.turn_to(a, f)
        for name in REL_STEP.values():
            before = drv.cell(a)
            drv.step(**{a: name})
            got = torch.tensor(drv.cell(a))
            want = moved_cells(torch.tensor(before), torch.tensor(f), torch.tensor(1 + MOVES[name]), 100, 100)
            assert got.tolist() == want.tolist() and drv.facing(a) == f
            assert move_class(torch.tensor(before), torch.tensor(f), got, 100, 100).item() == 1 + MOVES[name]
            drv.arrange({a: (x, f)})
    for d in range(4):  # a wall in direction d; every facing, the relative step that goes that way
        y = drv.spot([(0, 0)], near=(a,), ok=lambda c, d=d: drv.wall(add(c, d)))
        for f in range(4):
            drv.arrange({a: (y, f)})
            drv.step(**{a: REL_STEP[(d - f) % 4]})
            assert drv.cell(a) == y and drv.facing(a) == f


def test_real_three_and_four_players(commons):
    """A chain of three, three players into one cell, four rotating round a 2x2 block (7-player
    commons_harvest__open): the outcomes and their frequencies are those of one uniformly random
    order per step (resolve_moves over all 6 / 6 / 24 orders)."""
    drv = Driver(commons, 1)
    p = commons.possible_agents[:4]
    x = drv.spot([(0, k) for k in range(4)], near=p[:3])
    cells = [x, add(x, E), add(x, E, 2)]
    drv.arrange({a: (cell, E) for a, cell in zip(p, cells)})
    allowed = real_step_outcomes(cells, [E] * 3, ["FORWARD"] * 3)
    seen = repeat(drv, p[:3], ["FORWARD"] * 3, 90, lambda before: walk_back(drv, p[:3], before))
    assert set(seen) == set(allowed) and len(allowed) == 3
    for outcome, orders in allowed.items():  # 1/2, 1/3, 1/6 of the steps
        assert abs(seen[outcome] / 90 - orders / 6) < 0.2, (seen, allowed)
    COUNTS["chain of three over 90 steps (cells of A, B, C): seen / resolve_moves orders of 6"] = {
        k: (seen[k], allowed[k]) for k in allowed}

    x = drv.spot([(0, -1), (0, 0), (0, 1), (1, 0)], near=p[:3])
    cells, facing = [add(x, W), add(x, E), add(x, S)], [E, W, N]
    drv.arrange({a: (cell, f) for a, cell, f in zip(p, cells, facing)})
    allowed = real_step_outcomes(cells, facing, ["FORWARD"] * 3)
    seen = repeat(drv, p[:3], ["FORWARD"] * 3, 90, lambda before: walk_back(drv, p[:3], before))
    assert set(seen) == set(allowed) and len(allowed) == 3 and all(seen[k] >= 12 for k in allowed)
    COUNTS["three into one cell over 90 steps: times each player won"] = [
        seen[k] for k in sorted(allowed, key=lambda o: [o[i] == x for i in range(3)], reverse=True)]

    x = drv.spot([(0, 0), (0, 1), (1, 0), (1, 1)], near=p)
    square, facing = [x, add(x, E), add(add(x, E), S), add(x, S)], [E, S, W, N]
    drv.arrange({a: (cell, f) for a, cell, f in zip(p, square, facing)})
    assert real_step_outcomes(square, facing, ["FORWARD"] * 4) == Counter({tuple(square): 24})
    seen = repeat(drv, p, ["FORWARD"] * 4, 20, lambda before: None)
    assert seen == Counter({tuple(square): 20})


def test_real_zap_then_respawn(commons):
    """A zaps C (directly in front) while B, behind C, walks into C's cell in the same step: the
    moves (priority 150) are applied before the beam (140), so B is blocked by C, who then dies.
    Next step B walks into the now-empty cell (dead players hold no cell). C respawns (after
    framesTillRespawn = 4) on a spawn point ('P') that no live player holds."""
    drv = Driver(commons, 0)
    a, c, b = commons.possible_agents[:3]
    respawns = []
    for rep in range(6):
        x = drv.spot([(0, -1), (0, 0), (0, 1), (0, 2)], near=(a, b, c))
        drv.arrange({a: (add(x, W), E), c: (x, N), b: (add(x, E), W)})
        assert all(drv.alive(p) for p in (a, b, c))
        drv.step(**{a: "FIRE_ZAP", b: "FORWARD"})
        assert not drv.alive(c), "the zap missed"
        assert drv.cell(b) == add(x, E) and drv.cell(a) == add(x, W)  # blocked by the player being zapped
        drv.step(**{b: "FORWARD"})
        assert drv.cell(b) == x  # the dead player's cell is free
        for wait in range(20):
            if drv.alive(c):
                break
            drv.step()
        assert drv.alive(c), "no respawn"
        cell = drv.cell(c)
        assert drv.chars[cell] == "P" and cell not in drv.held(but=(c,))
        live = [drv.cell(p) for p in commons.agents if drv.alive(p)]
        assert len(live) == len(set(live))
        respawns.append((wait, cell))
    assert len({cell for _, cell in respawns}) > 1  # random spawn points
    COUNTS["respawn (steps waited after the zap step, cell)"] = respawns


def test_report_counts(capsys):
    """Not a check: prints the engine's frequencies gathered above (run with -s)."""
    with capsys.disabled():
        for name, count in COUNTS.items():
            print(f"\n{name}: {dict(count) if isinstance(count, Counter) else count}")
