"""The lookup tables a world model is trained with: the cell codebook, which codes each game uses,
the shared action-name vocabulary and each game's reward support. Built once from the training split
of a dataset.

Reward support: a game that pays few distinct values (coins: -2, 0, +1; clean_up: 0, +1) gets exactly
those values, so the categorical reward head's targets are one-hot and "nothing happened" is exactly 0.
A game that pays more distinct values than the head has bins (the `*_in_the_matrix` payoffs) gets 0
plus a grid uniform in symlog between its smallest and largest payoff (DreamerV3's symlog two-hot), and
its targets are two-hot between the two neighbouring bins (the expectation is the exact value)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from actionparty_env.games import load_catalog
from actionparty_env.model.codebook import Codebook, unique_patches, unique_rows
from actionparty_env.model.network import WorldModel
from training.store import list_episodes, read_episode


@dataclass
class Tables:
    games: list[str]                 # model game index -> substrate name
    action_vocab: list[str]          # shared action names
    action_ids: np.ndarray           # [G, max_actions] game-local action -> action-name id
    codebook: Codebook
    game_codes: np.ndarray           # [G, V] bool: codes seen in that game
    reward_support: np.ndarray       # [G, K] float32, sorted per game (padding repeats the largest value)
    reward_valid: np.ndarray         # [G, K] bool: the real bins of each game
    data_games: list[str]            # the games the data has episodes of (the others may draw any code)


def symlog(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def symexp(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.expm1(np.abs(x))


def reward_support(values: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """One game's support ([bins] float32, sorted) and valid mask from the distinct rewards it paid."""
    values = np.union1d(np.round(np.asarray(values, np.float64), 6), [0.0])
    if len(values) > bins:
        grid = symexp(np.linspace(symlog(values.min()), symlog(values.max()), bins - 1))
        values = np.union1d(grid, [0.0])[:bins]
    support = np.full(bins, values.max(), np.float32)
    support[: len(values)] = values
    valid = np.arange(bins) < len(values)
    return support, valid


class _EpisodePatches(Dataset):
    """One item per episode: its substrate and the distinct patches of all its frames."""

    def __init__(self, path: str, keys: list[str]):
        self.path, self.keys = path, keys

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i):
        ep = read_episode(self.path, self.keys[i])
        patches = np.concatenate([unique_patches(f) for f in ep.frames])
        return ep.header["substrate"], patches[unique_rows(patches)[0]], np.unique(ep.rewards)


def build_tables(path: str, max_actions: int, reward_bins: int, workers: int = 4, split: str = "train") -> Tables:
    catalog = load_catalog()
    games = sorted(catalog)
    vocab = sorted({a for spec in catalog.values() for a in spec.action_names})
    action_ids = np.zeros((len(games), max_actions), dtype=np.int64)
    for g, name in enumerate(games):
        names = catalog[name].action_names
        if len(names) > max_actions:
            raise ValueError(f"{name} has {len(names)} actions, more than max_actions={max_actions}")
        action_ids[g, : len(names)] = [vocab.index(a) for a in names]
    keys = list_episodes(path, split=split)
    if not keys:
        raise ValueError(f"{path}: no {split!r} episodes to build the codebook from")
    per_game: dict[str, list[np.ndarray]] = {}
    rewards: dict[str, list[np.ndarray]] = {}
    loader = DataLoader(_EpisodePatches(path, keys), batch_size=None, num_workers=workers)
    for substrate, patches, paid in tqdm(loader, desc="codebook", total=len(keys)):
        per_game.setdefault(substrate, []).append(np.asarray(patches))
        rewards.setdefault(substrate, []).append(np.asarray(paid))
    codebook = Codebook.from_patch_sets(p for ps in per_game.values() for p in ps)
    game_codes = np.zeros((len(games), len(codebook)), dtype=bool)
    for substrate, sets in per_game.items():
        for patches in sets:
            codes = codebook.encode(patches.reshape(-1, 8, 8, 3).transpose(1, 0, 2, 3).reshape(8, -1, 3))
            game_codes[games.index(substrate), codes.reshape(-1)] = True
    game_codes[~game_codes.any(1)] = True  # games absent from the data may draw any code
    support = np.zeros((len(games), max(reward_bins, 1)), np.float32)
    valid = np.zeros(support.shape, bool)
    for g, name in enumerate(games):  # a game absent from the data pays 0
        support[g], valid[g] = reward_support(np.concatenate(rewards.get(name, [np.zeros(1)])), support.shape[1])
    return Tables(games, vocab, action_ids, codebook, game_codes, support, valid, sorted(per_game))


def install_tables(model, tables: Tables) -> None:
    """Copy the tables into the model's buffers (they travel with its checkpoint)."""
    model.patches.copy_(torch.from_numpy(tables.codebook.patches))
    model.game_codes.copy_(torch.from_numpy(tables.game_codes))
    model.action_ids.copy_(torch.from_numpy(tables.action_ids))
    if model.cfg.reward_bins:
        model.reward_support.copy_(torch.from_numpy(tables.reward_support))
        model.reward_valid.copy_(torch.from_numpy(tables.reward_valid))
    model._codebook = tables.codebook


@torch.no_grad()
def grow_codebook(model: WorldModel, tables: Tables) -> tuple[WorldModel, int]:
    """`model` with the codes of `tables` it lacks appended to its codebook, and how many there are.

    Old codes keep their numbers, so everything keyed by code (the sprite and transition tables)
    stays valid. A new code starts as its nearest old patch (L2 in RGB): the same embedding and the
    same row of the code head, so the grown model predicts what the old one did, its probability
    shared with its twin until training tells them apart (an apple on grass starts as the grass it
    covers). The games the data shows get the new codes they draw; the other games keep theirs. The
    mask code moves to the end, as it always sits at vocab_size."""
    old = model.codebook()
    index = old.lookup(tables.codebook.patches)  # each table code's number in the grown codebook
    fresh = np.flatnonzero(index < 0)
    if not len(fresh):
        return model, 0
    v = len(old)
    index[fresh] = v + np.arange(len(fresh))
    new_patches = tables.codebook.patches[fresh]
    twin = torch.from_numpy(old.nearest(new_patches.reshape(len(fresh), -1)))
    grown = WorldModel(dataclasses.replace(model.cfg, vocab_size=v + len(fresh)), model.games, model.action_vocab)
    state = model.state_dict()
    state["patches"] = torch.cat([state["patches"], torch.from_numpy(new_patches).to(state["patches"])])
    emb = state["code_emb.weight"]  # [V + 1, d], the mask last
    state["code_emb.weight"] = torch.cat([emb[:v], emb[twin], emb[v:]])
    for key in ("code_head.weight", "code_head.bias"):
        state[key] = torch.cat([state[key], state[key][twin]])
    book = Codebook(state["patches"].cpu().numpy())
    codes = torch.zeros(len(model.games), len(book), dtype=torch.bool)
    codes[:, :v] = state["game_codes"].cpu()
    for game in set(tables.data_games) & set(model.games):
        seen = index[tables.game_codes[tables.games.index(game)]]
        codes[model.games.index(game), torch.from_numpy(seen)] = True
    state["game_codes"] = codes
    grown.load_state_dict(state)
    grown._codebook = book
    grown.sprite_tables, grown.transition_tables = model.sprite_tables, model.transition_tables
    return grown.to(emb.device), len(fresh)
