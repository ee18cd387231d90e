"""The catalog of Melting Pot substrates, read from the shipped `data/games.json`.

The runtime (the dream env, the dataset reader, the model) never needs Melting Pot: everything it must
know about a game is here. Regenerate the file from Melting Pot with `python -m training.catalog`.
"""
from __future__ import annotations

import difflib
import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any


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
