"""The catalog of Melting Pot substrates, read from the shipped `data/games.json`.

The runtime (the dream env, the dataset reader, the model) never needs Melting Pot: everything it must
know about a game is here. Regenerate the file from Melting Pot with `python -m training.catalog`.
"""
from __future__ import annotations

import difflib
import functools
import json
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

import numpy as np


@dataclass(frozen=True)
class EpisodeEnd:
    """How Melting Pot ends an episode of a substrate by its clock (the substrate's settings; the timing is
    the engine's, measured in tests/test_episode_end.py), in env steps after the reset:
    - at `max_steps` (`maxEpisodeLengthFrames`), always;
    - where the scene has a `StochasticIntervalEpisodeEnding`, with `probability` at step `first` (its
      `minimumFramesPerEpisode` + `interval` - 1) and at every `interval` steps after (`first` 0: none);
    - `after_interaction`: the step after the first interaction's result is paid (the `*_in_the_matrix`
      one-shot game, `endEpisodeOnFirstInteraction`; a rule of the world, actionparty_env/matrix.py).
    Ends that the world's state decides otherwise (hidden_agenda's vote, boat_race's disqualifications)
    are not here: the dream truncates those episodes at the env's `max_cycles`."""
    max_steps: int
    first: int = 0
    interval: int = 0
    probability: float = 0.0
    after_interaction: bool = False

    def draw_step(self, rng: np.random.Generator) -> int:
        """The step at which the clock ends an episode: the stochastic ending's chances are independent,
        so the first that ends it is `first` + `interval` x (a geometric count of chances missed), drawn at
        the reset, capped at `max_steps`."""
        if not self.first:
            return self.max_steps
        return int(min(self.first + self.interval * (rng.geometric(self.probability) - 1), self.max_steps))


@dataclass(frozen=True)
class GameSpec:
    name: str
    num_players: int  # default player count
    roles: tuple[str, ...]  # default roles, one per player
    action_names: tuple[str, ...]  # Melting Pot's order (NOOP, FORWARD, ...)
    action_set: tuple[dict, ...]  # the dmlab2d action dict for each action index
    map_rows: int  # default map; coins draws its size per build (see map_varies): the reader and the
    map_cols: int  # model take the size from the frame, not from here
    view: dict  # {"left", "right", "forward", "backward"} in cells, "centered"
    view_px: int  # 88 or 40 (square)
    identity_visible: bool  # False where pixels cannot tell players apart
    valid_roles: tuple[str, ...] = ()  # every role the substrate accepts
    map_varies: bool = False  # the map (size, layout or colours) is drawn anew for each build
    player_counts: tuple[int, ...] = ()  # the counts it takes with its default roles repeated (() unknown)
    seed_replays: bool | None = None  # the real engine replays an episode from its seed (None unknown)
    episode_end: EpisodeEnd | None = None  # Melting Pot's own end of an episode (None unknown)

    @property
    def num_actions(self) -> int:
        return len(self.action_names)

    def player_roles(self, num_players: int) -> tuple[str, ...]:
        """The roles of `num_players` players: the default roles, repeated (as the real env builds them)."""
        return tuple(self.roles[i % len(self.roles)] for i in range(num_players))

    @property
    def view_cells(self) -> tuple[int, int]:
        """(rows, cols) of the egocentric view in cells."""
        v = self.view
        return v["forward"] + v["backward"] + 1, v["left"] + v["right"] + 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "num_players": self.num_players,
            "roles": list(self.roles),
            "valid_roles": list(self.valid_roles),
            "action_names": list(self.action_names),
            "action_set": [dict(a) for a in self.action_set],
            "map_rows": self.map_rows,
            "map_cols": self.map_cols,
            "map_varies": self.map_varies,
            "view": dict(self.view),
            "view_px": self.view_px,
            "identity_visible": self.identity_visible,
            "player_counts": list(self.player_counts),
            "seed_replays": self.seed_replays,
            "episode_end": None if self.episode_end is None else asdict(self.episode_end),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GameSpec:
        return cls(
            name=d["name"],
            num_players=int(d["num_players"]),
            roles=tuple(d["roles"]),
            action_names=tuple(d["action_names"]),
            action_set=tuple(dict(a) for a in d["action_set"]),
            map_rows=int(d["map_rows"]),
            map_cols=int(d["map_cols"]),
            view=dict(d["view"]),
            view_px=int(d["view_px"]),
            identity_visible=bool(d["identity_visible"]),
            valid_roles=tuple(d.get("valid_roles", d["roles"])),
            map_varies=bool(d.get("map_varies", False)),
            player_counts=tuple(int(n) for n in d.get("player_counts") or ()),
            seed_replays=None if d.get("seed_replays") is None else bool(d["seed_replays"]),
            episode_end=None if d.get("episode_end") is None else EpisodeEnd(**d["episode_end"]),
        )


@functools.cache
def _load() -> dict[str, GameSpec]:
    text = resources.files("actionparty_env").joinpath("data/games.json").read_text()
    return {d["name"]: GameSpec.from_dict(d) for d in json.loads(text)["games"]}


def load_catalog() -> dict[str, GameSpec]:
    """All substrates by name (sorted), from the shipped catalog."""
    return dict(_load())


def get_game(name: str) -> GameSpec:
    """The GameSpec for `name`; a ValueError naming close matches if there is none."""
    games = _load()
    if name not in games:
        close = difflib.get_close_matches(str(name), list(games), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f" ({len(games)} games: see `actionparty catalog`)"
        raise ValueError(f"unknown substrate {name!r}{hint}")
    return games[name]
