"""Closed-loop dreaming: step B worlds of one game at once with the world model and a KV cache.

One `step(actions)` is (1) one pass that commits the current block (frame, poses, actions) to the cache
and reads every player's next state and reward from its action token, then (2) `sampling_steps`
masked-diffusion passes that draw the next frame's cell codes given the cache and the players' new
poses (MaskGIT-style: each pass fixes the most confident of the still-masked cells, on a cosine
schedule). Frames never leave code space, so unchanged cells are copied exactly.

A step never reads a tensor back to the host (no `.item()`, no boolean indexing, no branch on a
tensor's value): every decision is a tensor op, and what the host does decide (how many blocks the
cache holds, whether any world hides keys) it knows without asking the device, so the host can queue a
step's work without waiting for the GPU (docs/ARCHITECTURE.md, "Speed: the step"); grid.py's move
helpers keep to the same rule.

Rules on the frame: `DreamSimulator.logits_hooks` is a list of functions `hook(logits, cells, facing,
drawn) -> logits` applied, in order, to every sampling pass's code logits [B, R*C, V] given the
players' new cells [B, N, 2], facing [B, N] and which players are drawn [B, N] (alive and present).
The sprite rule (model/sprites.py: each live player drawn once, at its cell and facing) is the first
one; where avatars have stamina, the bar rule (a stamina bar only north of a live player) follows; a
rule of your own is appended the same way.

Decoding (`decoding=`), the small pure functions below:
- "calibrated" (the default): what the game leaves to chance happens at the model's calibrated rate.
  Each cell first decides whether it changes (a Bernoulli draw at the change head's probability), and
  only a changing cell picks a new code, among those the game changes it into (model/transitions.py); deaths and respawns are drawn from the alive head; a reward is
  drawn from the game's own payoffs. Movement and facing stay argmaxes (the game's movement is
  deterministic given the actions), and players move one after another in a random order, so two live
  players never share a cell (`actionparty_env.grid.resolve_moves`); a move into a cell no player can
  enter (a wall: its code was never seen changing into a player's sprite, `enterable_codes`) fails, as
  in the engine; in coins, whose map size varies per build, the canvas beyond the map never changes
  (`grid.void_cells`). Where avatars have stamina (predator_prey, factory_commons) the dream counts it
  as the game does, with predator_prey's meals (actionparty_env/stamina.py): a player it freezes keeps
  its cell and facing, and in predator_prey a player it leaves free moves and turns as its action says
  and who dies is the game's rule, not the alive head's draw (being eaten is that game's only death:
  `stamina.eaten`, after the moves), as is a predator's reward (+1 a prey eaten, its only reward).
  In coins the game's rule pays (actionparty_env/coins.py): a player stepping onto a coin the frame
  shows is paid, and so is the coin's owner, never otherwise. In the commons_harvest games apples are
  eaten, paid and regrown by the game's rule (actionparty_env/apples.py): +1 to a player stepping onto
  an apple, and each eaten apple's spot regrows at the rate its live neighbours set. Where zaps remove
  players (the commons_harvest games, clean_up) the game's rule says who is on the map
  (actionparty_env/zaps.py): a FIRE_ZAP off cooldown fires a beam after the moves, the players it
  reaches are removed, and each returns, at a spawn cell the pointer head draws, on the game's clock.
  In clean_up the river and the orchard follow the game's rule (actionparty_env/clean_up.py): dirt
  spawns and is cleaned by FIRE_CLEAN's beam, apples grow at the rate the river's dirt sets and pay
  +1 to the player that eats one. In externality_mushrooms__dense the game's rule pays a mushroom eaten
  (actionparty_env/mushrooms.py): a player stepping onto a mushroom the frame shows is paid, or the others
  are, by its colour, and an eater digesting is refused its moves and turns as the game refuses them;
  its graduated sanctions say whom a zap freezes and whom it removes (actionparty_env/sanctions.py).
  In the `*_in_the_matrix` games the game's rule resolves interactions (actionparty_env/matrix.py): it
  counts the resources each player steps onto, an INTERACT beam that reaches a ready player freezes both
  while the result shows, then pays both the matrix's payoffs of their inventories and removes them, to
  return on the game's clock. Seeded: same seed, same dream.
- "argmax": every output at its mode (the first checkpoint's decoding): no random event ever happens.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from actionparty_env.apples import AppleRule, AppleState, apple_codes, apple_regrowth_of, apple_step
from actionparty_env.clean_up import (FIRE_CLEAN, CleanUpRule, CleanUpState, clean_up_codes, clean_up_rules_of,
                                      clean_up_step)
from actionparty_env.coins import (coin_codes, coin_matches, coin_payoffs_of, coin_rewards, colour_directions,
                                   floor_codes)
from actionparty_env.games import load_catalog
from actionparty_env.grid import (JUMP, MOVES, STAY, TURNS, PlayerStates, cell_holders, moved_cells, resolve_moves,
                                  void_cells)
from actionparty_env.matrix import (MatrixState, back_on_map, collect, episode_over, interact, matrix_game_of, resolve,
                                    resource_classes)
from actionparty_env.model.attention import ORDER, Tokens
from actionparty_env.model.checkpoint import CheckpointWarning
from actionparty_env.model.network import Blocks, KVCache, WorldModel
from actionparty_env.model.sprites import constrain_attached, constrain_logits, restrict_to_start_appearance
from actionparty_env.model.step_graph import StepGraph
from actionparty_env.mushrooms import digestion_step, mushroom_payoffs_of, mushroom_rewards, mushroom_types
from actionparty_env.sanctions import SanctionState, sanction_clock, sanction_step, sanctions_of
from actionparty_env.simulator import DECODINGS, StepResult, accepts_old_reset
from actionparty_env.stamina import StaminaState, bar_codes, eaten, meals, stamina_of, stamina_step
from actionparty_env.zaps import FIRE_ZAP, ZapState, after_hits, zap_beam_code, zap_beams, zap_step, zapper_of

CATALOG = load_catalog()  # for GameSpec.map_varies and .episode_end
LogitsHook = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def unmask_schedule(num_cells: int, steps: int) -> list[int]:
    """How many cells are fixed after each of `steps` passes (cosine schedule, ends at all cells)."""
    return [num_cells - int(math.floor(num_cells * math.cos(math.pi / 2 * s / steps))) for s in range(1, steps + 1)]


def gumbel_argmax(logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """A sample of the categorical softmax(logits) over the last dim (Gumbel-max: no host sync)."""
    u = torch.rand(logits.shape, device=logits.device, generator=generator).clamp_(1e-10, 1.0)
    return (logits.float() - torch.log(-torch.log(u))).argmax(-1)


def bernoulli(prob: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(prob.shape, device=prob.device, generator=generator) < prob


def sample_codes(logits: torch.Tensor, temperature: float, generator: torch.Generator | None):
    """Pick a code per cell: argmax at temperature 0, else Gumbel-max sampling. Returns (codes, confidence)."""
    probs = logits.float().softmax(-1)
    if temperature <= 0:
        conf, idx = probs.max(-1)
        return idx, conf
    idx = gumbel_argmax(logits.float() / temperature, generator)
    return idx, probs.gather(-1, idx[..., None]).squeeze(-1)


def undo_weight(logit: torch.Tensor, weight: float) -> torch.Tensor:
    """The calibrated logit of a class trained with weight `weight` (its odds were multiplied by it)."""
    return logit - math.log(weight)


def decide_codes(logits: torch.Tensor, prev: torch.Tensor, change_prob: torch.Tensor, temperature: float,
                 generator: torch.Generator | None, next_allowed: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Calibrated cell decoding. logits [B, RC, V] (after the sprite constraint), prev [B, RC] the
    previous frame's code index (-1: a code this game never draws), change_prob [B, RC], next_allowed
    [V, V] the changes the game makes (model/transitions.py; None: any). A cell changes where its
    previous code is no longer allowed ("forced") or a Bernoulli draw at `change_prob` says so, and
    takes the best (or, at temperature > 0, a sampled) code other than its previous one among those it
    may change into; a drawn change with no such code leaves the cell as it was, a forced one picks
    freely. Returns (code index [B, RC], confidence [B, RC])."""
    known = prev >= 0
    index = prev.clamp(min=0)  # 0 stands in for an unknown code
    prev_logit = logits.gather(-1, index[..., None]).squeeze(-1)
    forced = ~known | (prev_logit == float("-inf"))
    # One pass over [B, RC, V] each: an unknown code's stand-in gets its own logit back, and a row's
    # max says whether any code is left (no [B, RC, V] masks are built for either).
    others = logits.scatter(-1, index[..., None], torch.where(known, float("-inf"), prev_logit)[..., None])
    possible = torch.ones_like(forced)
    if next_allowed is not None:
        ruled = others.where(next_allowed[index] | ~known[..., None], float("-inf"))
        possible = ruled.amax(-1) > float("-inf")
        others = torch.where((possible | ~forced)[..., None], ruled, others)
    change = forced | (possible & bernoulli(change_prob, generator))
    pick, conf = sample_codes(others, temperature, generator)
    return torch.where(change, pick, prev), conf


def decide_alive(alive_logit: torch.Tensor, alive: torch.Tensor, flip_weight: float, decoding: str,
                 generator: torch.Generator | None) -> torch.Tensor:
    """Next alive [B, N] from the alive head: a death (alive now) or a respawn (dead now) was trained with
    weight `flip_weight`, which comes off its logit before it is drawn (or thresholded, for "argmax")."""
    shift = math.log(flip_weight)
    logit = torch.where(alive, alive_logit.float() + shift, alive_logit.float() - shift)
    return logit > 0 if decoding == "argmax" else bernoulli(torch.sigmoid(logit), generator)


def decide_rewards(out: dict, support: torch.Tensor | None, valid: torch.Tensor | None, decoding: str,
                   generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(reward, expected reward) [B, N]: a draw from the categorical head over the game's payoffs
    (`support` [K], `valid` [K]), its mode for "argmax"; a regression head's value for both."""
    if "reward" in out:
        reward = out["reward"].float()
        return reward, reward
    logits = out["reward_logits"].float().masked_fill(~valid, float("-inf"))
    expected = (logits.softmax(-1) * support).sum(-1)
    pick = logits.argmax(-1) if decoding == "argmax" else gumbel_argmax(logits, generator)
    return support[pick], expected


def enterable_codes(next_allowed: torch.Tensor, is_player: torch.Tensor) -> torch.Tensor:
    """[V] bool: may a player step onto a cell showing code i. Yes where the game was seen changing i
    into a player's sprite (floor, an apple, a coin: `next_allowed` [V, V], model/transitions.py) or
    where i is a player's sprite (`is_player` [V]: its holder may move away first, `resolve_moves`
    decides). Walls never change into a player, so a move into one fails, as in the engine; left to
    the move head alone, players walked through coins' walls into the void beyond them."""
    return (next_allowed & is_player[None, :]).any(-1) | is_player


def decide_cells(out: dict, cells: torch.Tensor, facing: torch.Tensor, alive: torch.Tensor, alive_next: torch.Tensor,
                 present: torch.Tensor, rows: int, cols: int, torus: bool, decoding: str,
                 generator: torch.Generator | None, enterable: torch.Tensor | None = None,
                 move: torch.Tensor | None = None) -> torch.Tensor:
    """Every player's next cell [B, N, 2], in the engine's order of things (actionparty_env/grid.py):
    moves first, jointly: each player alive now holds its cell, and those staying alive step as the
    move head's argmax says (stay, one step relative to the facing, or JUMP), one after another in a
    random order (`resolve_moves`: blocked moves fail); then respawns and teleports take a cell from the
    pointer head among the cells no one holds (a draw for "calibrated", as the engine picks a free spawn
    point at random; the best one for "argmax"), in the same order. Dead players keep their cell.
    `enterable` [B, R*C] bool: the cells a player may step or respawn onto (None: every cell); a step
    into any other cell fails (a wall). `move` [B, N]: the moves, where the game decides them (the
    stamina); None: the move head's argmax."""
    b, n = alive.shape
    move = out["move_logits"].argmax(-1) if move is None else move
    holds = present & alive
    jump = present & alive_next & (~alive | (move == JUMP))
    walk = holds & alive_next & ~jump
    order = torch.rand(b, n, device=cells.device, generator=generator).argsort(-1)
    step = moved_cells(cells, facing, move, rows, cols, torus)
    if enterable is not None:
        step = torch.where(enterable.gather(1, step[..., 0] * cols + step[..., 1])[..., None], step, cells)
    intent = torch.where(walk[..., None], step, cells)
    new = resolve_moves(cells, intent, holds, order, rows, cols)
    flat = new[..., 0] * cols + new[..., 1]
    # Cells taken, plus a spare column where the others write. scatter_ with a Python value, because an
    # indexed assignment of one (held[...] = True) copies it to the device and waits for the copy.
    held = torch.zeros(b, rows * cols + 1, dtype=torch.bool, device=cells.device)
    held.scatter_(1, torch.where(walk, flat, rows * cols), True)
    if enterable is not None:
        held[:, :-1] |= ~enterable
    # In turn order (row k: the player whose turn is k-th), gathered once, so a turn reads views.
    pointer = out["cell_logits"].float().gather(1, order[..., None].expand(-1, -1, rows * cols))
    if decoding != "argmax":  # every turn's Gumbel noise in one draw, turn after turn (gumbel_argmax's)
        u = torch.rand(n, b, rows * cols, device=cells.device, generator=generator).clamp_(1e-10, 1.0)
        pointer = pointer - torch.log(-torch.log(u)).transpose(0, 1)
    jumping, stays = jump.gather(1, order), flat.gather(1, order)
    taken = []
    for k in range(n):
        pick = pointer[:, k].masked_fill(held[:, :-1], float("-inf")).argmax(-1)
        go = jumping[:, k]
        held.scatter_(1, torch.where(go, pick, rows * cols)[:, None], True)
        taken.append(torch.where(go, pick, stays[:, k]))
    flat = flat.scatter(1, order, torch.stack(taken, 1))
    return torch.stack([flat // cols, flat % cols], -1)


class DreamSimulator:
    """The world model behind the `Simulator` protocol (actionparty_env/simulator.py)."""

    def __init__(self, model: WorldModel, game, num_players: int, num_worlds: int = 1, device="cpu",
                 sampling_steps: int = 1, temperature: float = 0.0, seed: int = 0, consistent_sprites: bool = True,
                 decoding: str | None = None, cuda_graph: bool = False, compile: bool = False):
        """`game`: a substrate name, a GameSpec, or the model's game index. `consistent_sprites`: draw
        each live player once, at its predicted cell and facing (model/sprites.py), where the checkpoint
        has a sprite table for the game. `decoding`: "calibrated" or "argmax" (the module doc); None picks
        "calibrated" for a model with a change head, else "argmax" (the first checkpoint's decoding).
        `cuda_graph`: on a CUDA device, record the step once the window is full and replay it
        (model/step_graph.py; the same frames, one launch instead of hundreds); the settings and
        `logits_hooks` are those at the recording. Ignored on the CPU. `compile`: run the transformer's
        layers through `torch.compile` (`WorldModel.compiled_layers`: the same dream up to float rounding;
        the first steps of each new shape wait for the compiler, tens of seconds)."""
        if isinstance(game, int):
            self.game_id = game
        else:
            self.game_id = model.game_index(game if isinstance(game, str) else game.name)
        self.game = game
        self.model = model.eval()
        self.device = torch.device(device)
        self.num_players = num_players
        self.num_worlds = num_worlds
        if not 1 <= sampling_steps <= 16:
            raise ValueError(f"sampling_steps must be in 1..16, got {sampling_steps}")
        decoding = decoding or ("calibrated" if model.cfg.change_head else "argmax")
        if decoding not in DECODINGS:
            raise ValueError(f"decoding must be one of {', '.join(DECODINGS)}, got {decoding!r}")
        self.sampling_steps = sampling_steps
        self.temperature = temperature
        self.decoding = decoding
        self.codebook = model.codebook()
        # Only this game's codes can be drawn: slice the output layer once.
        self.allowed = model.game_codes[self.game_id].nonzero().squeeze(1).to(self.device)
        self.head_w = model.code_head.weight[self.allowed]
        self.head_b = model.code_head.bias[self.allowed]
        self.code_index = torch.full((model.cfg.vocab_size,), -1, dtype=torch.long, device=self.device)
        self.code_index[self.allowed] = torch.arange(len(self.allowed), device=self.device)
        self.torus = bool(model.game_torus[self.game_id])
        if model.cfg.reward_bins:
            self.reward_support = model.reward_support[self.game_id].float().to(self.device)
            self.reward_valid = model.reward_valid[self.game_id].to(self.device)
        else:
            self.reward_support = self.reward_valid = None
        name = model.games[self.game_id]
        changes = model.transition_tables.get(name)
        self.next_allowed = changes.allowed(self.allowed.cpu(), model.cfg.vocab_size).to(self.device) if changes else None
        table = model.sprite_tables.get(name) if consistent_sprites else None
        map_varies = name in CATALOG and CATALOG[name].map_varies  # coins: size and colours per build
        self.sprites = table  # None: frames drawn freely; else players drawn consistent with their states
        self.identity_from_start = False
        self.logits_hooks: list[LogitsHook] = []  # rules on the frame's code logits (the module doc)
        if table is not None:
            self.logits_hooks.append(self.sprite_rule)
            self.player_code, owned, self.appearance = (x.to(self.device) for x in
                                                        table.allowed(self.allowed.cpu(), num_players))
            self.owned_by_slot = owned                            # [N, 4, V]
            self.owned = owned.expand(num_worlds, -1, -1, -1)     # [B, N, 4, V], per world
            # Games that draw colours per build: a player keeps the appearance of its start frame.
            self.identity_from_start = map_varies
        # Which codes a player may step onto (walls: none), where the checkpoint has both tables; and,
        # where the map size varies per build (coins), the canvas beyond the map, which never changes.
        self.enterable = None
        if self.next_allowed is not None and table is not None:
            self.enterable = enterable_codes(self.next_allowed, self.player_code)
        # Coins' payoffs by the game's rule (actionparty_env/coins.py), where the codes say what a coin is.
        self.coin_payoffs = coin_payoffs_of(name) if self.enterable is not None else None
        if self.coin_payoffs is not None:
            patches = self.codebook.patches[self.allowed.cpu().numpy()]
            self.is_coin = coin_codes(patches, self.enterable, self.player_code)
            self.floor_code = int(np.flatnonzero(floor_codes(patches))[0])
            self.colour = colour_directions(patches).to(self.device)
            self.logits_hooks.append(self.coin_rule)
        # Externality Mushrooms' payoffs by the game's rule (actionparty_env/mushrooms.py), where the codes show them.
        self.mushroom_payoffs = mushroom_payoffs_of(name)
        if self.mushroom_payoffs is not None:
            self.mushroom_type = mushroom_types(self.codebook.patches[self.allowed.cpu().numpy()]).to(self.device)
            self.digestion = torch.tensor(self.mushroom_payoffs.digestion, device=self.device)
            if not bool((self.mushroom_type >= 0).any()):
                warnings.warn(f"{name}: this checkpoint's codebook shows no mushroom, so the dream's mushrooms are "
                              f"never paid", CheckpointWarning, stacklevel=2)
        self.digesting: torch.Tensor | None = None  # [B, N] steps each eater's moves are still refused
        # Commons harvest's apples by the game's rule (actionparty_env/apples.py), where the codes show apples.
        regrowth = apple_regrowth_of(name) if table is not None else None
        found = apple_codes(self.codebook.patches[self.allowed.cpu().numpy()]) if regrowth else None
        self.apples = None if found is None else AppleRule.of(regrowth, found, self.device)
        if self.apples is not None:
            apples = self.apples.codes
            grass = torch.zeros_like(apples.apple)
            grass[apples.grass] = True
            ground = grass.clone()
            ground[apples.floor] = True
            self.apple_others = ~(apples.apple | ground | self.player_code)  # beams, walls: left to the model
            self.off_spots = ~(apples.apple | grass)  # what a cell that is no apple spot may show
            self.logits_hooks.append(self.apple_rule)
        self.apple_state: AppleState | None = None  # per world, after a reset
        # Zaps that remove players, by the game's rule (actionparty_env/zaps.py): a beam stops at walls, the
        # codes no player enters and none changes into.
        if self.enterable is not None:
            static = ~(self.next_allowed & ~torch.eye(len(self.allowed), dtype=torch.bool, device=self.device)).any(-1)
            self.beam_blockers = ~self.enterable & static
        self.zapper = zapper_of(name) if self.enterable is not None else None
        self.is_beam_code = None
        if self.zapper is not None:
            self.is_zap = torch.tensor([a == FIRE_ZAP for a in model.action_vocab], device=self.device)
            self._draw_beams()
        self.zap_state: ZapState | None = None
        # The `*_in_the_matrix` games' interactions by the game's rule (actionparty_env/matrix.py): its beams
        # are drawn as zaps are (the same colour), and stop at walls and resources.
        self.matrix = matrix_game_of(name) if self.enterable is not None else None
        if self.matrix is not None:
            patches = self.codebook.patches[self.allowed.cpu().numpy()]
            self.resource_class = resource_classes(self.matrix, patches).to(self.device)
            self.matrices = self.matrix.matrices(self.device)
            self.is_interact = torch.tensor([a == "INTERACT" for a in model.action_vocab], device=self.device)
            self._draw_beams()
        self.matrix_state: MatrixState | None = None
        # The one-shot game's episode ends after its interaction (games.EpisodeEnd), which the rule sees.
        end = CATALOG[name].episode_end if name in CATALOG else None
        self.ends_after_interaction = self.matrix is not None and end is not None and end.after_interaction
        self.terminated: torch.Tensor | None = None  # [B] bool, the last step's (StepResult.terminated)
        # Graduated sanctions by the game's rule (actionparty_env/sanctions.py): whom a zap freezes or removes.
        self.sanctions = sanctions_of(name) if self.enterable is not None else None
        if self.sanctions is not None:
            self.is_zap = torch.tensor([a == FIRE_ZAP for a in model.action_vocab], device=self.device)
            self._draw_beams()
        self.sanction_state: SanctionState | None = None
        # Clean Up's river and orchard by the game's rule (actionparty_env/clean_up.py), where the codes show them.
        rules = clean_up_rules_of(name) if self.enterable is not None else None
        found = clean_up_codes(self.codebook.patches[self.allowed.cpu().numpy()]) if rules else None
        self.clean_up = None if found is None else CleanUpRule.of(rules, found, self.device)
        if self.clean_up is not None:
            self.is_clean = torch.tensor([a == FIRE_CLEAN for a in model.action_vocab], device=self.device)
            # the codes other rules draw over the river and the orchard: players, a zap's beam
            self.clean_up_free = self.player_code | (self.is_beam_code if self.is_beam_code is not None else False)
            self.logits_hooks.append(self.clean_up_rule)
            self.clean_up_apples_drawn = bool(found.apple.any())
            if not self.clean_up_apples_drawn:
                warnings.warn(f"{name}: this checkpoint's codebook has no apple for this game (no training episode "
                              f"grew one), so the dream pays apples by the game's rule but cannot draw them; "
                              f"retrain with episodes whose players clean the river (docs/TRAINING.md)",
                              CheckpointWarning, stacklevel=2)
        self.clean_up_state: CleanUpState | None = None
        self.clean_beam: torch.Tensor | None = None  # [B, R*C] the cells this step's cleaning beams cover
        self.zap_beam: torch.Tensor | None = None  # [B, R*C] the cells this step's beams cover, during a step
        self.apple_shows: torch.Tensor | None = None  # [B, R*C] what each spot shows next, during a step
        self.void: torch.Tensor | None = None  # [B, R*C] bool, set at each reset where the map varies
        self.has_void = self.enterable is not None and map_varies
        # The avatars' stamina, counted as the game counts it (actionparty_env/stamina.py).
        self.stamina = stamina_of(name) if name in CATALOG else None
        if self.stamina is not None:
            vocab = model.action_vocab  # indexed by shared action-name id, as `advance` takes actions
            roles = CATALOG[name].player_roles(num_players)
            self.freeze_steps = self.stamina.freeze_steps(roles).to(self.device)
            self.costly = self.stamina.costly_actions(vocab).to(self.device)
            self.predators = self.stamina.predators(roles).to(self.device)  # whose beams eat (stamina.meals)
            self.interact = torch.tensor([a == "INTERACT" for a in vocab], device=self.device)
            if self.stamina.moves_follow_actions or self.stamina.deaths_are_meals:  # each action's move and turn
                self.action_move = torch.tensor([MOVES[a] + 1 if a in MOVES else STAY for a in vocab], device=self.device)
                self.action_turn = torch.tensor([TURNS.get(a, 0) for a in vocab], device=self.device)
            if consistent_sprites:  # its bar is drawn with the player, so it follows the sprite switch
                self.bars = bar_codes(self.codebook.patches[self.allowed.cpu().numpy()]).to(self.device)
                self.logits_hooks.append(self.bar_rule)
        self.stamina_state: StaminaState | None = None
        self.generator = torch.Generator(device=self.device)
        self.reseed(seed)
        if not isinstance(compile, bool):
            raise ValueError(f"compile must be True or False, got {compile!r}")
        self.compiled = compile
        self.step_graph = None  # the recorded step (model/step_graph.py), on a GPU where asked for
        if cuda_graph and self.device.type == "cuda":
            self.step_graph = self._new_step_graph()
        self.codes = self.expected_rewards = None
        self.players: PlayerStates | None = None  # every world's player states [B, N, ...], after a reset
        self.cache = self._new_cache()
        self.games = torch.full((num_worlds,), self.game_id, dtype=torch.long, device=self.device)
        self.action_ids = model.action_ids[self.game_id].to(self.device)  # game-local action -> shared name id
        self.present = torch.ones(num_worlds, num_players, dtype=torch.bool, device=self.device)
        self.padded = False  # some player slot is absent (training's batches): masks per world

    def _draw_beams(self) -> None:
        """Where the codebook has the zap beam's code, the frame shows the rule's beams (`zap_beam`, set each
        step) and no other (`zap_rule`)."""
        beam = zap_beam_code(self.codebook.patches[self.allowed.cpu().numpy()])
        if beam is not None:
            self.is_beam_code = torch.zeros(len(self.allowed), dtype=torch.bool, device=self.device)
            self.is_beam_code[beam] = True
            self.beam_only = torch.where(self.is_beam_code, 0.0, float("-inf"))
            self.logits_hooks.append(self.zap_rule)

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(int(seed))

    def _new_cache(self) -> KVCache:
        return KVCache(self.model.cfg.depth, self.model.cfg.window, self.model.rope,
                       static=self.step_graph is not None)

    def _new_step_graph(self) -> StepGraph:
        return StepGraph(self._step_state, self._load_step_state, self._graph_step, self.generator)

    def _step_state(self) -> list[torch.Tensor]:
        """Every tensor a step reads that a step or a reset replaces (StepGraph's `state`)."""
        stamina = self.stamina_state.fields() if self.stamina_state is not None else ()
        apples = (self.apple_state.spots, self.apple_state.live) if self.apple_state is not None else ()
        zaps = self.zap_state.fields() if self.zap_state is not None else ()
        matrix = self.matrix_state.fields() if self.matrix_state is not None else ()
        sanctions = self.sanction_state.fields() if self.sanction_state is not None else ()
        clean_up = self.clean_up_state.fields() if self.clean_up_state is not None else ()
        held = [t for t in (self.void, self.owned if self.sprites is not None else None, self.digesting)
                if t is not None]
        players = self.players
        return [self.codes, players.cells, players.facing, players.alive, *stamina, *apples, *zaps, *matrix, *sanctions, *clean_up, *held,
                self.present, *self.cache.tensors()]

    def _load_step_state(self, tensors: list[torch.Tensor]) -> None:
        it = iter(tensors)
        self.codes = next(it)
        self.players = PlayerStates(next(it), next(it), next(it))
        if self.stamina_state is not None:
            self.stamina_state = StaminaState(*(next(it) for _ in self.stamina_state.fields()))
        if self.apple_state is not None:
            self.apple_state = AppleState(next(it), next(it))
        if self.zap_state is not None:
            self.zap_state = ZapState(next(it), next(it))
        if self.matrix_state is not None:
            self.matrix_state = MatrixState(*(next(it) for _ in self.matrix_state.fields()))
        if self.sanction_state is not None:
            self.sanction_state = SanctionState(*(next(it) for _ in self.sanction_state.fields()))
        if self.clean_up_state is not None:
            self.clean_up_state = CleanUpState(*(next(it) for _ in self.clean_up_state.fields()))
        if self.void is not None:
            self.void = next(it)
        if self.sprites is not None:
            self.owned = next(it)
        if self.digesting is not None:
            self.digesting = next(it)
        self.present = next(it)
        self.cache.load(list(it))

    def _graph_step(self, action_ids: torch.Tensor) -> list[torch.Tensor]:
        rewards = self._advance(action_ids)
        return [rewards, self.expected_rewards, *(() if self.terminated is None else (self.terminated,))]

    def _pass(self, codes, players: PlayerStates, actions, parts: str):
        """One transformer pass over a block of `parts` at the window's next time position, after the cache.
        Returns the hidden states and what `KVCache.append` takes to commit the block."""
        blocks = Blocks(self.games, codes[:, None], players[:, None], actions[:, None], self.present)
        x, layout, rows, cols, ok = self.model.embed_block(blocks, 0, self.cache.blocks, parts)
        key_ok = ok if self.padded else None
        h, kv = self.model.run(x, layout, rows, cols, key_ok, self.cache, compiled=self.compiled)
        return h, (kv, layout, key_ok)

    @accepts_old_reset
    @torch.no_grad()
    def reset(self, frames, players: PlayerStates, worlds=None) -> None:
        """Start (some) worlds from real states: frames uint8 [B,H,W,3] and `players` [B,N,...] (numpy or
        torch; the old form `reset(frames, cells, facing, alive, worlds)` warns, simulator.accepts_old_reset)."""
        frames = torch.as_tensor(frames)
        codes = torch.stack([torch.from_numpy(self.codebook.encode(f.cpu().numpy())) for f in frames])
        self.reset_codes(codes, players, worlds)

    @accepts_old_reset
    @torch.no_grad()
    def reset_codes(self, codes, players: PlayerStates, worlds=None, present=None) -> None:
        """`reset` for frames already encoded as codes [B,R,C]; `present` [B,N] marks padded player slots."""
        codes = torch.as_tensor(codes, device=self.device).long()
        if present is not None:
            self.present = torch.as_tensor(present, device=self.device).bool()
            padded = not bool(self.present.all())  # read back once here, at a reset, not in every step
            if padded != self.padded and self.step_graph is not None:  # a step of another shape: record anew
                self.step_graph = self._new_step_graph()
            self.padded = padded
        players = players.to(self.device)
        if codes.shape[0] != self.num_worlds or players.cells.shape[:2] != (self.num_worlds, self.num_players):
            raise ValueError(f"reset expects {self.num_worlds} worlds of {self.num_players} players, got "
                             f"{codes.shape[0]} frames and cells of shape {tuple(players.cells.shape)}")
        if self.identity_from_start:
            self._restrict_owned(codes, players.cells, players.alive, worlds if self.codes is not None else None)
        void = self._void(codes, players) if self.has_void else None
        fresh = StaminaState.fresh(self.stamina, tuple(players.alive.shape), self.device) if self.stamina else None
        apples = None
        if self.apples is not None:
            apples = AppleState.at_start(self.apples.codes, self.code_index[codes.view(len(codes), -1)])
        zaps = ZapState.fresh(tuple(players.alive.shape), self.device) if self.zapper is not None else None
        matrix = MatrixState.fresh(self.matrix, tuple(players.alive.shape), self.device) if self.matrix else None
        sanctions = SanctionState.fresh(tuple(players.alive.shape), self.device) if self.sanctions else None
        clean_up = None
        if self.clean_up is not None:
            clean_up = CleanUpState.at_start(self.clean_up, self.code_index[codes.view(len(codes), -1)], self.num_players)
        digesting = torch.zeros_like(players.facing) if self.mushroom_payoffs is not None else None
        if worlds is None or self.codes is None:
            self.codes, self.players, self.void, self.stamina_state = codes, players, void, fresh
            self.digesting = digesting
            self.apple_state, self.zap_state, self.clean_up_state = apples, zaps, clean_up
            self.matrix_state, self.sanction_state = matrix, sanctions
            self.cache = self._new_cache()
            return
        worlds = torch.as_tensor(worlds, device=self.device).bool()
        if codes.shape[1:] != self.codes.shape[1:]:
            raise ValueError(f"all worlds of a simulator share one map size: {tuple(self.codes.shape[1:])} cells, "
                             f"got {tuple(codes.shape[1:])}")
        self.codes = torch.where(worlds[:, None, None], codes, self.codes)
        self.players = players.where(worlds, self.players)
        if void is not None:
            self.void = torch.where(worlds[:, None], void, self.void)
        if fresh is not None:
            self.stamina_state = fresh.where(worlds, self.stamina_state)
        if apples is not None:
            self.apple_state = apples.where(worlds, self.apple_state)
        if zaps is not None:
            self.zap_state = zaps.where(worlds, self.zap_state)
        if matrix is not None:
            self.matrix_state = matrix.where(worlds, self.matrix_state)
        if sanctions is not None:
            self.sanction_state = sanctions.where(worlds, self.sanction_state)
        if clean_up is not None:
            self.clean_up_state = clean_up.where(worlds, self.clean_up_state)
        if digesting is not None:
            self.digesting = torch.where(worlds[:, None], digesting, self.digesting)
        self.cache.forget(worlds)

    def _void(self, codes: torch.Tensor, players: PlayerStates) -> torch.Tensor:
        """[B, R*C] the cells beyond the map in frames `codes` [B, R, C] (grid.void_cells)."""
        enterable = self._enterable_cells(self.code_index[codes])
        return void_cells(enterable, players.cells, players.alive & self.present).flatten(1)

    def _enterable_cells(self, index: torch.Tensor) -> torch.Tensor:
        """Per cell of a frame given as code indices (-1: a code this game never draws, left to the model):
        may a player step onto it (`enterable_codes`)."""
        return self.enterable[index.clamp(min=0)] | (index < 0)

    def _stamina_moves(self, move: torch.Tensor, facing: torch.Tensor, action_ids: torch.Tensor,
                       now: PlayerStates, alive_next: torch.Tensor, frozen: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """The moves and facings [B, N] where the stamina decides them, given the heads' (`move`, `facing`)
        and whom it freezes this step (`frozen` [B, N]):
        a player it freezes keeps its cell and facing; where it is the game's only refusal (and live
        players never teleport) a free player steps and turns as its action says. A respawn's cell and
        facing stay the heads' (decide_cells: a player dead now jumps). Who is frozen this step depends on
        the stamina before it alone; its update waits for the moves (`_stamina_after_moves`)."""
        turned = facing
        if self.stamina.moves_follow_actions:
            move = self.action_move[action_ids]
            turned = (now.facing + self.action_turn[action_ids]) % 4
        move = torch.where(frozen & (move != JUMP), STAY, move)
        staying = now.alive & alive_next & (move != JUMP)  # a respawned player's facing is the head's
        return move, torch.where(staying, torch.where(frozen, now.facing, turned), facing)

    def _stamina_after_moves(self, action_ids: torch.Tensor, now: PlayerStates, cells: torch.Tensor,
                             facing: torch.Tensor, alive_next: torch.Tensor, red: torch.Tensor
                             ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """The stamina's update, once the moves are known (the meals' beams hit after them), and where
        being eaten is the only death, who dies (`stamina.eaten`: the heads' deaths were held back; `red`
        [B, N]: who is in the red band as this step's update leaves it).
        Returns the next alive [B, N] (an eaten player lies where it was eaten) and the meals
        (`stamina.meals`; None where nobody eats)."""
        ate = None
        if self.stamina.meal_freeze:
            live, interact = now.alive & self.present, self.interact[action_ids]
            rows, cols = self.codes.shape[1:]
            if self.stamina.deaths_are_meals:
                alive_next = alive_next & ~eaten(self.stamina, self.stamina_state, red, self.predators, interact,
                                                 cells, facing, live, rows, cols)
            ate = meals(self.stamina_state, self.predators, interact, cells, facing, live, alive_next, rows, cols,
                        self.torus)
        self.stamina_state, _ = stamina_step(self.stamina, self.freeze_steps, self.stamina_state,
                                             self.costly[action_ids], now.alive, ate)
        return alive_next, ate

    def _coin_rewards(self, prev: torch.Tensor, now: PlayerStates, cells: torch.Tensor,
                      alive_next: torch.Tensor) -> torch.Tensor:
        """Coins' rewards [B, N] by the game's rule (actionparty_env/coins.py): a player that steps onto a cell
        whose code (`prev` [B, R*C], game code indices) shows a coin collects it, and the coin is its own
        where its sprites have the coin's colour; a player standing still collects a coin regrowing under
        it, of a random player's colour."""
        b, n = alive_next.shape
        cols = self.codes.shape[2]
        entered = prev.gather(1, cells[..., 0] * cols + cells[..., 1]).clamp(min=0)
        live = now.alive & alive_next & self.present
        moved = (cells != now.cells).any(-1)
        match = coin_matches(self.colour[entered], self._player_colours())
        regrown = bernoulli(torch.full((b, n), self.coin_payoffs.regrow_rate, device=self.device), self.generator)
        owner = torch.randint(0, n, (b, n), device=self.device, generator=self.generator)
        match = torch.where(moved, match, owner == torch.arange(n, device=self.device))
        collected = live & torch.where(moved, self.is_coin[entered], regrown)
        return coin_rewards(self.coin_payoffs, collected, match)

    def _mushroom_rewards(self, prev: torch.Tensor, now: PlayerStates, cells: torch.Tensor,
                          alive_next: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Externality Mushrooms' rewards [B, N] by the game's rule (actionparty_env/mushrooms.py): a live
        player that steps onto a cell whose code (`prev` [B, R*C], game code indices) shows a mushroom eats
        it; the shares go to the players on the map after the step. Also what each ate ([B, N], -1: none)."""
        cols = self.codes.shape[2]
        entered = prev.gather(1, cells[..., 0] * cols + cells[..., 1])
        moved = (cells != now.cells).any(-1) & now.alive & alive_next & self.present & (entered >= 0)
        eaten = torch.where(moved, self.mushroom_type[entered.clamp(min=0)], -1)
        return mushroom_rewards(self.mushroom_payoffs, eaten, self.present, alive_next), eaten

    def _matrix_step(self, prev: torch.Tensor, now: PlayerStates, cells: torch.Tensor, facing: torch.Tensor,
                     alive: torch.Tensor, action_ids: torch.Tensor, walls: torch.Tensor, rows: int, cols: int
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """An `*_in_the_matrix` game's step after the moves (actionparty_env/matrix.py): the resources the
        players stepped onto (or returned onto) by the previous frame's codes (`prev` [B, R*C]), the beams of
        those on the map before the step (they stop at `walls` [B, R*C] and at resources), the results due.
        Returns (rewards [B, N], who is on the map after the step [B, N], the cells a beam covers [B, R*C])."""
        entered = prev.gather(1, cells[..., 0] * cols + cells[..., 1])
        stepped = alive & self.present & (~now.alive | (cells != now.cells).any(-1)) & (entered >= 0)
        state = collect(self.matrix_state, torch.where(stepped, self.resource_class[entered.clamp(min=0)], -1))
        blocks = walls | ((self.resource_class[prev.clamp(min=0)] >= 0) & (prev >= 0))
        state, _, beam = interact(self.matrix, self.matrices, state, self.is_interact[action_ids], cells, facing,
                                  now.alive & self.present, blocks, rows, cols)
        self.matrix_state, rewards, on_map = resolve(state, alive & self.present)
        return rewards, on_map, beam

    def _player_colours(self) -> torch.Tensor:
        """[B, N, 3]: each player's colour direction, from its sprites in its world (actionparty_env/coins.py)."""
        return F.normalize(self.owned.any(2).float() @ self.colour, dim=-1)

    def coin_rule(self, logits: torch.Tensor, cells: torch.Tensor, facing: torch.Tensor,
                  drawn: torch.Tensor) -> torch.Tensor:
        """Coins' world as a logits hook (actionparty_env/coins.py): a coin stays until a player collects it
        and a wall stays always, the cell a player leaves shows the floor, and the floor may only become a
        coin of one player's colour, drawn at random per cell (the decoding's change probability there is
        the game's regrowth rate). Player sprites are left to the sprite rule."""
        b, rc, v = logits.shape
        prev = self.code_index[self.codes.view(b, -1)].clamp(min=0)
        likeness = torch.einsum("vc,bnc->bnv", self.colour, self._player_colours())
        own_coin = likeness.masked_fill(~self.is_coin, float("-inf")).argmax(-1)  # [B, N]: each player's coin
        owner = torch.randint(0, own_coin.shape[1], (b, rc), device=self.device, generator=self.generator)
        on_floor, left = prev == self.floor_code, self.player_code[prev]  # left: a player stood there
        extra = torch.where(on_floor, own_coin.gather(1, owner), torch.where(left, self.floor_code, prev))
        keep = self.player_code.expand(b, rc, v).clone()  # a coin, a wall: only itself (or a player)
        keep.scatter_(2, extra[..., None], True)
        keep[..., self.floor_code] |= on_floor | left
        return logits.masked_fill(~keep, float("-inf"))

    def apple_rule(self, logits: torch.Tensor, cells: torch.Tensor, facing: torch.Tensor,
                   drawn: torch.Tensor) -> torch.Tensor:
        """Commons harvest's apples as a logits hook (actionparty_env/apples.py): a spot shows what the rule
        says (`apple_shows`: its apple, a regrown one, grass, or floor), where that is no change from its
        previous code also a beam over it (what the model draws); a cell that is no spot never shows an
        apple or grass. Player sprites are left to the sprite rule."""
        b, rc, v = logits.shape
        shows = self.apple_shows
        spot = shows >= 0
        change = spot & (shows != self.code_index[self.codes.view(b, -1)])
        keep = torch.where(spot[..., None], self.player_code | (self.apple_others & ~change[..., None]), self.off_spots)
        target = shows.clamp(min=0)[..., None]
        keep = keep.scatter(2, target, spot[..., None] | keep.gather(2, target))
        return logits.masked_fill(~keep, float("-inf"))

    def zap_rule(self, logits: torch.Tensor, cells: torch.Tensor, facing: torch.Tensor,
                 drawn: torch.Tensor) -> torch.Tensor:
        """Zaps' beams as a logits hook (actionparty_env/zaps.py): the beam's code on exactly the cells this
        step's beams cover (`zap_beam`), over whatever the rules before it allow there, and nowhere else."""
        return torch.where(self.zap_beam[..., None], self.beam_only, logits.masked_fill(self.is_beam_code, float("-inf")))

    def clean_up_rule(self, logits: torch.Tensor, cells: torch.Tensor, facing: torch.Tensor,
                      drawn: torch.Tensor) -> torch.Tensor:
        """Clean Up's river and orchard as a logits hook (actionparty_env/clean_up.py): a container shows
        its water or its dirt as the rule says, a spot an apple or none, a cleaning beam's cell a beam
        code (over a zap's, as the engine draws it: `zap_rule` leaves those cells to this one); nowhere
        else dirt, an apple or a cleaning beam. Players and zaps are the other rules'."""
        codes, rule, state = self.clean_up.codes, self.clean_up, self.clean_up_state
        river = torch.where(state.dirt[..., None], codes.dirt, codes.water)
        ground = ~(codes.apple | codes.dirt | codes.beam)
        spot = torch.where(state.apples[..., None] & self.clean_up_apples_drawn, codes.apple, ground)
        keep = torch.where(rule.river[:, None], river, torch.where(rule.spots[:, None], spot, ground))
        keep = torch.where(self.clean_beam[..., None], codes.beam | self.player_code, keep | self.clean_up_free)
        return logits.masked_fill(~keep, float("-inf"))

    def sprite_rule(self, logits: torch.Tensor, cells: torch.Tensor, facing: torch.Tensor,
                    drawn: torch.Tensor) -> torch.Tensor:
        """The sprite rule as a logits hook: player sprites only where a drawn player stands, there only
        its own sprites for its facing (model/sprites.py)."""
        return constrain_logits(logits, self.player_code, self.owned, cells, facing, drawn, self.codes.shape[2])

    def bar_rule(self, logits: torch.Tensor, cells: torch.Tensor, facing: torch.Tensor,
                 drawn: torch.Tensor) -> torch.Tensor:
        """The bar rule as a logits hook: stamina bars only in the cell north of a drawn player
        (model/sprites.py, `constrain_attached`)."""
        return constrain_attached(logits, self.bars, cells, drawn, *self.codes.shape[1:], self.torus)

    def _restrict_owned(self, codes, cells, alive, worlds) -> None:
        """Per world, each player's allowed sprites narrowed to its start code's appearance group."""
        rows, cols = codes.shape[1:]
        r, c = cells[..., 0].clamp(0, rows - 1), cells[..., 1].clamp(0, cols - 1)  # dead players' cells are arbitrary
        start = self.code_index[codes[torch.arange(len(codes), device=self.device)[:, None], r, c]]
        owned = restrict_to_start_appearance(self.owned_by_slot, self.appearance, torch.where(alive, start, -1))
        if worlds is not None:
            worlds = torch.as_tensor(worlds, device=self.device).bool()
            owned = torch.where(worlds[:, None, None, None], owned, self.owned)
        self.owned = owned

    @torch.no_grad()
    def step(self, actions) -> StepResult:
        """actions: [B,N] game-local action indices."""
        actions = torch.as_tensor(actions, device=self.device).long()
        rewards = self.advance(self.action_ids[actions])
        # The states are the caller's to keep: a recorded step (cuda_graph) overwrites its own in place.
        players = PlayerStates(*(t.clone() for t in (self.players.cells, self.players.facing, self.players.alive)))
        return StepResult(frames=self.codebook.decode(self.codes), players=players, rewards=rewards,
                          expected_rewards=self.expected_rewards, terminated=self.terminated)

    @torch.no_grad()
    def advance(self, action_ids: torch.Tensor) -> torch.Tensor:
        """One closed-loop step on codes, given shared action-name ids [B,N]; returns rewards [B,N]."""
        if self.codes is None:
            raise RuntimeError("call reset() before step()")
        # bf16 on the GPU, as in training (tensor cores; the picks are argmaxes over codes and cells).
        # Autocast's cache of bf16 weights must be off while a graph records (torch.cuda.graph's rule):
        # the casts are recorded with the step.
        graphed = self.step_graph is not None
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda", cache_enabled=not graphed):
            if not (graphed and self.cache.steady()):
                return self._advance(action_ids)
            try:
                rewards, self.expected_rewards, *ended = self.step_graph(action_ids)
                self.terminated = ended[0] if ended else None
            except RuntimeError as e:  # not recordable (a host read in a rule, say): go on eagerly
                if self.step_graph.graph is not None:
                    raise  # a replay's error is the step's own
                warnings.warn(f"the dream's step could not be recorded as a CUDA graph, so it runs eagerly "
                              f"(slower, the same frames): {e}", RuntimeWarning, stacklevel=3)
                self.step_graph = None
                return self._advance(action_ids)
            return rewards

    def _advance(self, action_ids: torch.Tensor) -> torch.Tensor:
        model, cfg = self.model, self.model.cfg
        b, rows, cols = self.codes.shape
        # (1) Commit the current block; the action tokens give each player's next state.
        tokens = Tokens(self.num_players, rows * cols)
        now = self.players
        h, commit = self._pass(self.codes, now, action_ids, ORDER)
        self.cache.append(*commit)
        part = tokens.split(h)
        out = model.player_heads(part["A"][:, 0], part["F"][:, 0])
        alive = decide_alive(out["alive_logit"], now.alive, cfg.alive_flip_weight, self.decoding, self.generator)
        if self.stamina is not None and self.stamina.deaths_are_meals:  # the beams decide deaths, after the moves
            alive = alive | now.alive
        if self.zapper is not None:  # who is on the map is the zaps' clock and beams, not the alive head's
            fires, returns, self.zap_state = zap_step(self.zapper, self.zap_state, now.alive & self.present,
                                                      self.is_zap[action_ids])
            alive = now.alive | returns  # the beams remove players after the moves
        if self.matrix is not None:  # who is on the map is the interactions' clock, not the alive head's
            alive = now.alive | back_on_map(self.matrix, self.matrix_state, now.alive)
        if self.sanctions is not None:  # who is on the map is the sanctions' clock, not the alive head's
            alive, refused = sanction_clock(self.sanctions, self.sanction_state, now.alive)
        prev = self.code_index[self.codes.view(b, -1)]  # -1: a code this game never draws
        facing = out["facing_logits"].argmax(-1)
        move = None
        if self.stamina is not None:  # this step's count before any meal: whom it freezes, the bands it leaves
            counted, frozen = stamina_step(self.stamina, self.freeze_steps, self.stamina_state,
                                           self.costly[action_ids], now.alive)
        if self.stamina is not None and cfg.move_head:
            move, facing = self._stamina_moves(out["move_logits"].argmax(-1), facing, action_ids, now, alive, frozen)
        # An eater digesting, a player frozen by a zap, or one in an interaction keeps its cell and facing.
        held = self.digesting > 0 if self.digesting is not None else None
        if self.sanctions is not None:
            held = refused if held is None else held | refused
        if self.matrix is not None:
            held = self.matrix_state.frozen()
        if held is not None and cfg.move_head:
            move = torch.where(held, STAY, out["move_logits"].argmax(-1) if move is None else move)
            facing = torch.where(held & now.alive & alive, now.facing, facing)
        if cfg.move_head:
            enterable = None if self.enterable is None else self._enterable_cells(prev)
            cells = decide_cells(out, now.cells, now.facing, now.alive, alive, self.present, rows, cols,
                                 self.torus, self.decoding, self.generator, enterable, move)
        else:  # the first checkpoint's pointer over every cell
            cell_idx = out["cell_logits"].argmax(-1)
            cells = torch.where(alive[..., None], torch.stack([cell_idx // cols, cell_idx % cols], -1), now.cells)
        standing = alive  # on the map after the moves, before any zap (a zapped player has eaten first)
        if self.enterable is not None:
            walls = self.beam_blockers[prev.clamp(min=0)] & (prev >= 0)  # what stops a beam
        if self.zapper is not None:
            hits, beam = zap_beams(self.zapper, fires, cells, facing, now.alive & self.present, walls, rows, cols)
            alive = alive & ~hits.any(1)
            self.zap_state = after_hits(self.zap_state, alive)
        if self.matrix is not None:
            matrix_rewards, alive, beam = self._matrix_step(prev, now, cells, facing, alive, action_ids, walls,
                                                            rows, cols)
            if self.ends_after_interaction:
                self.terminated = episode_over(self.matrix_state, self.present)
        if self.sanctions is not None:
            blocks = walls
            if self.mushroom_payoffs is not None:  # the mushrooms stop a zap too
                blocks = blocks | ((self.mushroom_type[prev.clamp(min=0)] >= 0) & (prev >= 0))
            self.sanction_state, alive, beam = sanction_step(self.sanctions, self.sanction_state, alive & self.present,
                                                             self.is_zap[action_ids], cells, facing, blocks, rows, cols)
        beams = self.zapper is not None or self.matrix is not None or self.sanctions is not None
        if beams or self.clean_up is not None:
            drawn = cell_holders(cells, alive & self.present, rows, cols)[:, :-1] >= 0  # beams are not drawn over them
        if beams:
            self.zap_beam = beam & ~drawn
        ate = None
        if self.stamina is not None:
            alive, ate = self._stamina_after_moves(action_ids, now, cells, facing, alive,
                                                   counted.value < self.stamina.red)
        rewards, self.expected_rewards = decide_rewards(out, self.reward_support, self.reward_valid, self.decoding,
                                                        self.generator)
        if ate is not None and self.stamina.deaths_are_meals:  # a predator's only reward: the prey it ate
            meal = ate[0].to(rewards.dtype) * self.stamina.meal_reward
            rewards = torch.where(self.predators, meal, rewards)
            self.expected_rewards = torch.where(self.predators, meal, self.expected_rewards)
        if self.coin_payoffs is not None:
            rewards = self.expected_rewards = self._coin_rewards(prev, now, cells, alive)
        if self.matrix is not None:
            rewards = self.expected_rewards = matrix_rewards
        if self.mushroom_payoffs is not None:
            rewards, eaten = self._mushroom_rewards(prev, now, cells, alive)
            self.expected_rewards = rewards
            self.digesting = digestion_step(self.digestion, self.digesting, eaten, alive)
        if self.clean_up is not None:
            before = PlayerStates(now.cells, now.facing, now.alive & self.present)
            rewards, self.clean_up_state, beam = clean_up_step(
                self.clean_up, self.clean_up_state, prev, self.clean_up_free | self.clean_up.codes.beam, before,
                cells, facing, standing & self.present, self.is_clean[action_ids], rows, cols, walls, self.generator,
                random_events=self.decoding != "argmax")
            self.clean_beam = beam & ~drawn
            if self.zapper is not None:  # the cleaning beam is drawn over a zap's where they cross
                self.zap_beam = self.zap_beam & ~self.clean_beam
            self.expected_rewards = rewards
        if self.apples is not None:
            rewards, self.apple_state, self.apple_shows = apple_step(
                self.apples, self.apple_state, prev, self.player_code, cells, alive & self.present, rows, cols,
                self.generator, regrow=self.decoding != "argmax")
            self.expected_rewards = rewards
        # (2) Draw the next frame's codes given the new poses, unmasking on a cosine schedule.
        codes = torch.full_like(self.codes, model.mask_code)
        fixed = torch.zeros(b, rows * cols, dtype=torch.bool, device=self.device)
        done = 0
        drawn_at = PlayerStates(cells, facing, alive)  # the new poses, the next state
        for target in unmask_schedule(rows * cols, self.sampling_steps):
            h, _ = self._pass(codes, drawn_at, action_ids, "GPF")
            h_frame = tokens.split(h, "GPF")["F"][:, 0]
            logits = F.linear(h_frame, self.head_w, self.head_b)
            for hook in self.logits_hooks:
                logits = hook(logits, cells, facing, alive & self.present)
            if self.decoding == "argmax":
                pick, conf = sample_codes(logits, self.temperature, self.generator)
            else:
                if cfg.change_head:
                    change_prob = torch.sigmoid(undo_weight(model.change_head(h_frame).squeeze(-1).float(),
                                                            cfg.change_weight))
                else:  # no change head: the code head's own probability of another code
                    change_prob = 1 - logits.float().softmax(-1).gather(-1, prev.clamp(min=0)[..., None]).squeeze(-1)
                if self.coin_payoffs is not None:  # a coin regrows on the floor at the game's rate
                    change_prob = torch.where(prev == self.floor_code, self.coin_payoffs.regrow_rate, change_prob)
                pick, conf = decide_codes(logits, prev, change_prob, self.temperature, self.generator,
                                          self.next_allowed)
            pick = self.allowed[pick]
            if self.void is not None:  # the canvas beyond the map keeps its codes
                pick = torch.where(self.void, self.codes.view(b, -1), pick)
            flat = codes.view(b, -1)
            conf = conf.masked_fill(fixed, -1.0)
            order = conf.argsort(-1, descending=True)
            newly = torch.zeros_like(fixed).scatter_(1, order[:, : target - done], True) & ~fixed
            flat = torch.where(newly, pick, flat)
            fixed = fixed | newly
            done = target
            codes = flat.view(b, rows, cols)
        self.codes, self.players = codes, drawn_at
        return rewards
