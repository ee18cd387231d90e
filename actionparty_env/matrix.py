"""The `*_in_the_matrix` games' interactions (arenas, repeated and one-shot), as the game resolves them (issue 12):
inventories, interaction beams, the payoff matrix, the freeze and the removal that follow.

Melting Pot's `TheMatrix`, `Resource` and `GameInteractionZapper` (meltingpot/lua/levels/the_matrix/
components.lua; the numbers are each substrate config's):
- Every player starts with one of each of the K resources in its inventory. A live player stepping onto a
  cell that shows resource k collects it (inventory k + 1) and is "ready"; collecting pays nothing here.
- A live, unfrozen player whose cooldown timer is 0 and who takes INTERACT fires a beam (the zap beam's
  geometry, `zaps.beam_paths`) and sets the timer to `cooldown`; a timer above 0 counts down instead.
  Only the first player the beam reaches counts (its lines in `beam_lines`' order; the engine marks the
  zapper as interacted at its first hit, and each player interacts at most once a step). The
  interaction happens where neither player is already in one and both are ready.
- Its payoffs come from the two inventories as mixed strategies: with r and c the zapper's and the
  hit player's inventories divided by their sums, the zapper (row player) is paid r A c and the hit
  player (column player) r B c. Both inventories go back to one of each and both players are frozen
  (no move, turn or beam) while the result shows, `freeze` steps; then both are paid, and both leave the
  map, to return at a spawn point `respawn_after` steps later (the zaps' clock, `zaps.after_hits`).
Nothing else pays or removes a player in these games, so where the rule applies it decides rewards and
who is on the map; the heads draw where a returning player appears and the frame.

Why a rule: the reward head paid the interactions as a blurred mean, and too little (the RL benchmark's
stag_hunt_in_the_matrix__arena: the dream paid its own policy +0.75 where the real game paid +1.56,
`benchmarks/results/rl_h200_matwm2.md`); the payoff of an interaction is a product of two inventories
that no frame shows, which the rule counts. Every helper is a tensor op: no host sync.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from actionparty_env.grid import cell_holders
from actionparty_env.zaps import Zapper, beam_paths, fire_clock

# The resource sprite (shapes.BUTTON drawn at 8 pixels a cell): a ring of the resource's colour.
RING = np.zeros((8, 8), dtype=bool)
RING[1:7, 1:7] = True
RING[2:6, 2:6] = False


@dataclass(frozen=True)
class MatrixGame:
    """One `*_in_the_matrix` substrate's settings: `TheMatrix`'s payoffs (`row` A for the zapper, `column`
    B for the hit player, K x K), the resources' colours (RESOURCEk_COLOR, in class order), the
    interaction beam's `Zapper` (cooldown, length, radius, `framesTillRespawn`) and `freezeOnInteraction`."""
    row: tuple[tuple[float, ...], ...]
    column: tuple[tuple[float, ...], ...]
    colours: tuple[tuple[int, int, int], ...]
    beam: Zapper
    freeze: int = 16

    @property
    def num_resources(self) -> int:
        return len(self.row)

    def matrices(self, device) -> torch.Tensor:
        """[2, K, K] float: A and B on `device`, made once (a step makes no tensor from host data)."""
        return torch.tensor([self.row, self.column], dtype=torch.float32, device=device)


def _transpose(m: tuple[tuple[float, ...], ...]) -> tuple[tuple[float, ...], ...]:
    return tuple(zip(*m))


_TEAL_RED = ((30, 225, 185), (225, 30, 70))
_RGB = ((150, 0, 0), (0, 150, 0), (0, 0, 150))
_YELLOW_VIOLET_BLUE = ((255, 227, 11), (109, 42, 255), (42, 188, 255))
_ARENA = Zapper(cooldown=2, length=3, radius=1, respawn_after=50)
_STAG_HUNT, _CHICKEN = ((4, 0), (2, 2)), ((3, 2), (5, 0))
_PRISONERS = ((3, 0), (5, 1))
_PURE = ((1, 0, 0), (0, 1, 0), (0, 0, 1))
_RATIONALIZABLE = ((1, 0, 0), (0, 2, 0), (0, 0, 3))
_SCISSORS = ((0, -10, 10), (10, 0, -10), (-10, 10, 0))

MATRIX_GAMES = {
    "stag_hunt_in_the_matrix__arena": MatrixGame(_STAG_HUNT, ((4, 2), (0, 2)), _TEAL_RED, _ARENA),
    "chicken_in_the_matrix__arena": MatrixGame(_CHICKEN, ((3, 5), (2, 0)), _TEAL_RED, _ARENA),
    "prisoners_dilemma_in_the_matrix__arena": MatrixGame(_PRISONERS, ((3, 5), (0, 1)), _TEAL_RED, _ARENA),
    "bach_or_stravinsky_in_the_matrix__arena": MatrixGame(((3, 0), (0, 2)), ((2, 0), (0, 3)),
                                                          ((123, 231, 255), (255, 163, 123)), _ARENA),
    "pure_coordination_in_the_matrix__arena": MatrixGame(_PURE, _transpose(_PURE), _RGB, _ARENA),
    "rationalizable_coordination_in_the_matrix__arena": MatrixGame(_RATIONALIZABLE, _transpose(_RATIONALIZABLE),
                                                                   _YELLOW_VIOLET_BLUE, _ARENA),
    "running_with_scissors_in_the_matrix__arena": MatrixGame(_SCISSORS, _transpose(_SCISSORS), _YELLOW_VIOLET_BLUE,
                                                             _ARENA),
}
# The two-player `__repeated` variants: the same interactions, back 6 steps after one (framesTillRespawn 5).
_REPEATED = Zapper(cooldown=2, length=3, radius=1, respawn_after=5)
_REPEATED_COLOURS = {"rationalizable_coordination_in_the_matrix": _RGB}
MATRIX_GAMES.update({
    name.replace("__arena", "__repeated"):
        MatrixGame(game.row, game.column, _REPEATED_COLOURS.get(name.split("__")[0], game.colours), _REPEATED)
    for name, game in list(MATRIX_GAMES.items())})
# The one-shot game: running with scissors' interaction, after which the episode ends (games.EpisodeEnd's
# `after_interaction`; `episode_over`), so its removal (framesTillRespawn 100) is never undone.
MATRIX_GAMES["running_with_scissors_in_the_matrix__one_shot"] = MatrixGame(
    _SCISSORS, _transpose(_SCISSORS), _YELLOW_VIOLET_BLUE, Zapper(cooldown=2, length=3, radius=1, respawn_after=100))


def matrix_game_of(substrate: str) -> MatrixGame | None:
    """The substrate's interaction rule, None where it has none (or it is not modelled)."""
    return MATRIX_GAMES.get(substrate)


def resource_classes(game: MatrixGame, patches: np.ndarray) -> torch.Tensor:
    """[V] long over codes (`patches` uint8 [V, 8, 8, 3]): k for a cell showing resource k, -1 otherwise."""
    classes = np.full(len(patches), -1, dtype=np.int64)
    ring = patches[:, RING]  # [V, 20, 3]
    for k, colour in enumerate(game.colours):
        classes[(ring == np.array(colour, dtype=np.uint8)).all(-1).all(-1)] = k
    return torch.from_numpy(classes)


@dataclass(frozen=True)
class MatrixState:
    """Per world and player: inventory [B, N, K] float; ready [B, N] bool (collected one since the last
    interaction); the beam's cooldown timer [B, N]; `showing` [B, N], the steps before an interaction's
    result is paid (-1: in none); `payout` [B, N] float, what it pays; `waited` [B, N], the steps a
    removed player has been off the map."""
    inventory: torch.Tensor
    ready: torch.Tensor
    cooling: torch.Tensor
    showing: torch.Tensor
    payout: torch.Tensor
    waited: torch.Tensor

    @staticmethod
    def fresh(game: MatrixGame, shape: tuple[int, int], device) -> MatrixState:
        """A new episode's: one of each resource, nobody ready, interacting or waiting."""
        zeros = torch.zeros(shape, dtype=torch.long, device=device)
        return MatrixState(torch.ones(*shape, game.num_resources, device=device),
                           torch.zeros(shape, dtype=torch.bool, device=device), zeros, zeros - 1,
                           torch.zeros(shape, device=device), zeros)

    def fields(self) -> tuple[torch.Tensor, ...]:
        return self.inventory, self.ready, self.cooling, self.showing, self.payout, self.waited

    def where(self, worlds: torch.Tensor, other: MatrixState) -> MatrixState:
        """This state in `worlds` [B] bool, `other`'s elsewhere."""
        def pick(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return torch.where(worlds.view(-1, *([1] * (a.dim() - 1))), a, b)
        return MatrixState(*(pick(a, b) for a, b in zip(self.fields(), other.fields())))

    def frozen(self) -> torch.Tensor:
        """[B, N] who is refused moves, turns and beams this step: those in an interaction."""
        return self.showing >= 0


def back_on_map(game: MatrixGame, state: MatrixState, alive: torch.Tensor) -> torch.Tensor:
    """[B, N] who comes back to the map this step (off it `respawn_after` + 1 steps, the engine's count)."""
    return ~alive & (state.waited > game.beam.respawn_after)


def collect(state: MatrixState, entered: torch.Tensor) -> MatrixState:
    """The inventories after this step's moves: `entered` [B, N] long, the resource class of the cell each
    player stepped onto (-1: none, or no move)."""
    got = torch.nn.functional.one_hot(entered.clamp(min=0), state.inventory.shape[-1]) * (entered >= 0)[..., None]
    return MatrixState(state.inventory + got, state.ready | (entered >= 0), state.cooling, state.showing,
                       state.payout, state.waited)


def payoffs(matrices: torch.Tensor, row: torch.Tensor, column: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the row player's, the column player's) payoffs [...] of inventories `row` and `column` [..., K], under
    `matrices` [2, K, K] (`MatrixGame.matrices`)."""
    r = row / row.sum(-1, keepdim=True)
    c = column / column.sum(-1, keepdim=True)
    return ((r @ matrices[0]) * c).sum(-1), ((r @ matrices[1]) * c).sum(-1)


def interact(game: MatrixGame, matrices: torch.Tensor, state: MatrixState, wants: torch.Tensor, cells: torch.Tensor,
             facing: torch.Tensor, on_map: torch.Tensor, blocks: torch.Tensor, rows: int, cols: int
             ) -> tuple[MatrixState, torch.Tensor, torch.Tensor]:
    """This step's beams and interactions, after the moves and collections (`matrices`: the game's payoffs on
    the step's device, `MatrixGame.matrices`): `wants` [B, N] whose action is
    INTERACT, `cells` [B, N, 2] and `facing` [B, N] after the moves, `on_map` [B, N] who stands on the map,
    `blocks` [B, R*C] the cells that stop a beam besides players. Every beam is fired before any hit is
    resolved (dmlab2d resolves hits after the step's updaters), then hits in zapper order (the engine's
    updater order); an interaction's result so starts to count from the next step, and is paid `freeze`
    + 1 steps after the beam (`showing` counts them down). Returns (the state, who fired [B, N], the cells
    a beam is drawn on [B, R*C])."""
    b, n = wants.shape
    free = on_map & ~state.frozen()
    fires, cooling = fire_clock(game.beam.cooldown, state.cooling, free, wants)
    holders = cell_holders(cells, on_map, rows, cols)  # [B, R*C + 1], -1: nobody
    at, beam = beam_paths(game.beam.length, game.beam.radius, fires, cells, facing, blocks | (holders[:, :-1] >= 0),
                          rows, cols)
    hit = holders.gather(1, at.view(b, -1)).view(at.shape)  # [B, N, L], -1: nobody
    first = hit.gather(2, (hit >= 0).long().argmax(-1, keepdim=True)).squeeze(-1)  # [B, N], -1: nobody
    worlds = torch.arange(b, device=wants.device)
    inventory, ready, showing, payout = state.inventory, state.ready, state.showing, state.payout
    busy = torch.zeros_like(wants)  # interacted this step (the engine's `interactedThisStep`)
    for z in range(n):
        target = first[:, z].clamp(min=0)
        marks = fires[:, z] & (first[:, z] >= 0) & ~busy[:, z] & ~busy[worlds, target]
        busy = busy.clone()
        busy[:, z] |= marks
        busy[worlds, target] |= marks
        meets = marks & (showing[worlds, target] < 0) & ready[:, z] & ready[worlds, target]
        row_pay, column_pay = payoffs(matrices, inventory[:, z], inventory[worlds, target])
        pair = torch.zeros_like(wants)
        pair[:, z] = meets
        pair[worlds, target] |= meets
        pays = torch.zeros_like(payout)
        pays[worlds, target] = column_pay
        pays[:, z] = row_pay  # a player never hits itself, so the zapper's own slot is its row payoff
        payout = torch.where(pair, pays, payout)
        showing = torch.where(pair, game.freeze + 1, showing)
        inventory = torch.where(pair[..., None], 1.0, inventory)
        ready = ready & ~pair
    return MatrixState(inventory, ready, cooling, showing, payout, state.waited), fires, beam


def resolve(state: MatrixState, on_map: torch.Tensor) -> tuple[MatrixState, torch.Tensor, torch.Tensor]:
    """The results that are due, at the end of the step (`on_map` [B, N] after the beams): an interaction
    whose result has shown `freeze` steps pays both players and removes them. Returns (the state with
    the waits counted, rewards [B, N], who is on the map after the step [B, N])."""
    due = state.showing == 0
    rewards = torch.where(due, state.payout, 0.0)
    on_map = on_map & ~due
    showing = torch.where(due, -1, torch.where(state.showing > 0, state.showing - 1, state.showing))
    waited = torch.where(on_map, 0, state.waited + 1)
    return MatrixState(state.inventory, state.ready, state.cooling, showing, state.payout, waited), rewards, on_map


def episode_over(state: MatrixState, present: torch.Tensor) -> torch.Tensor:
    """[B] bool, in a one-shot game (`games.EpisodeEnd.after_interaction`), after this step's `resolve`: the
    worlds whose episode ends at this step, the step after an interaction's result was paid (the engine ends
    it on the next frame, `endEpisodeOnFirstInteraction`). Its players have then been off the map two steps;
    nothing else removes a player in these games. `present` [B, N]: the world's player slots."""
    return ((state.waited == 2) & present).any(-1)
