"""Write the game catalog `actionparty_env/data/games.json` from Melting Pot.

    python -m training.catalog            # all 49 substrates, one subprocess each, ~1-2 min on 2 cores
    python -m training.catalog --one coins  # print one substrate's entry (what each subprocess runs)
    python -m training.catalog --player-counts  # only fill in player_counts (~40 min on 2 busy cores)
    python -m training.catalog --seed-replays   # only fill in seed_replays (10 builds + 20 steps each)
    python -m training.catalog --episode-ends   # only fill in episode_end (settings only, seconds)

Each substrate is described in its own process because a Lua error inside dmlab2d can abort the
whole process (factory_commons__either_or does so while stepping). A substrate is built with its
default roles and Python's `random` seeded with 0 (coins draws its map size and colours from it);
map rows x cols and the view size are read from the built world, not guessed from the config.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

CATALOG_PATH = Path(__file__).resolve().parents[1] / "actionparty_env" / "data" / "games.json"
_MOVES = {0: "NOOP", 1: "FORWARD", 2: "STEP_RIGHT", 3: "BACKWARD", 4: "STEP_LEFT"}
_TURNS = {-1: "TURN_LEFT", 1: "TURN_RIGHT"}


def _identity_visible(name: str) -> bool:
    """False where the global frame draws every player alike (shared/MELTINGPOT.md)."""
    if name.endswith("_in_the_matrix__repeated") or name.startswith("chemistry__"):
        return False
    return name not in {
        "running_with_scissors_in_the_matrix__one_shot",
        "pure_coordination_in_the_matrix__arena",
        "rationalizable_coordination_in_the_matrix__arena",
    }


def _snake(key: str) -> str:
    """fireZap -> FIRE_ZAP, eat_apple -> EAT_APPLE."""
    out = "".join(f"_{c}" if c.isupper() else c for c in key)
    return out.upper().lstrip("_")


def _derived_name(action: dict, multi_valued: set[str]) -> str:
    """A name from the action dict; a key that takes several values in the set carries its value."""
    move, turn = action.get("move", 0), action.get("turn", 0)
    rest = {k: v for k, v in action.items() if k not in ("move", "turn") and v}
    if not rest and turn == 0:
        return _MOVES[move]
    if not rest and move == 0:
        return _TURNS[turn]
    return "_".join(f"{_snake(k)}_{v}" if k in multi_valued else _snake(k) for k, v in rest.items())


def action_names(name: str, action_set: list[dict]) -> list[str]:
    """Melting Pot's own constant names (NOOP, FIRE_ZAP, ...) where its config module has them,
    else names derived from the action dict (VOTE_2, OFFER_APPLE_-3_OFFER_BANANA_1)."""
    import types

    mod = sys.modules[f"meltingpot.configs.substrates.{name}"]
    modules = [mod] + [m for m in vars(mod).values() if isinstance(m, types.ModuleType)
                       and m.__name__.startswith("meltingpot.configs.substrates.")]
    values: dict[str, set] = {}
    for action in action_set:
        for k, v in action.items():
            values.setdefault(k, set()).add(v)
    multi_valued = {k for k, vs in values.items() if len(vs - {0}) > 1}
    names = []
    for action in action_set:
        own = [k for m in modules for k, v in vars(m).items()
               if k.isupper() and k != "ACTION_SET" and isinstance(v, dict) and v == action]
        names.append(own[0] if own else _derived_name(action, multi_valued))
    if len(set(names)) != len(names):
        raise RuntimeError(f"{name}: action names are not unique: {names}")
    return names


def _avatar_view(settings: Any) -> dict:
    sim = settings.simulation
    objects = list(sim.get("gameObjects", [])) + ([sim.prefabs["avatar"]] if "avatar" in sim.get("prefabs", {}) else [])
    for obj in objects:
        for comp in obj.get("components", []):
            if comp["component"] == "Avatar" and "view" in comp.get("kwargs", {}):
                v = comp["kwargs"]["view"]
                return {k: (bool(v[k]) if k == "centered" else int(v[k]))
                        for k in ("left", "right", "forward", "backward", "centered")}
    raise RuntimeError("no Avatar component with a view")


MOST_PLAYERS = 16  # the largest player count tried (the world model's slots; fruit_market's default)


def player_counts(name: str, most: int = MOST_PLAYERS) -> list[int]:
    """The player counts 1..max(most, default) the substrate takes with its default roles repeated: its
    settings build and its Lua world starts (hidden_agenda builds settings for 3 players, then its Lua
    says "Not enough impostors"). Both envs accept exactly these (`actionparty_env.players`)."""
    import dmlab2d

    from actionparty_env.meltingpot_import import builder, get_config
    from actionparty_env.real import build_lab2d_settings

    roles = tuple(get_config(name).default_player_roles)
    ok = []
    for n in range(1, max(most, len(roles)) + 1):
        try:
            _, s = build_lab2d_settings(name, tuple(roles[i % len(roles)] for i in range(n)), seed=0)
            flat = builder.parse_python_settings_for_dmlab2d(s)
            flat["env_seed"] = "0"
            dmlab2d.Lab2d(builder._DMLAB2D_ROOT, flat).start(episode=0, seed=0)
        except (AssertionError, IndexError, KeyError, ValueError, RuntimeError):
            continue
        ok.append(n)
    return ok


def seed_replays(name: str, builds: int = 10, steps: int = 20, seed: int = 0) -> bool:
    """Whether `builds` fresh engines of the substrate, each reset with `seed` and stepped with the same
    actions, give the same frames, player states and rewards (in one process, as PettingZoo's seed test
    does). dmlab2d's own hash containers (per-table salted by address) and its LuaJIT's string hashing
    (seeded from the OS) reorder spawns and other Lua table walks between builds in some substrates; no
    engine setting fixes that (MELTINGPOT.md; the README lists those substrates)."""
    import numpy as np

    from actionparty_env.games import get_game
    from actionparty_env.real import MeltingPotEngine

    game = get_game(name)
    actions = np.random.default_rng(seed).integers(game.num_actions, size=(steps, game.num_players))
    runs = []
    for _ in range(builds):
        engine = MeltingPotEngine()
        step = engine.build(name, seed=seed)
        trace = [step.frame.tobytes(), step.cells.tobytes(), step.facing.tobytes()]
        for a in actions:
            step = engine.step(a)
            trace += [step.frame.tobytes(), step.cells.tobytes(), step.alive.tobytes(), step.rewards.tobytes()]
            if step.done:
                break
        runs.append(trace)
        engine.close()
    return all(r == runs[0] for r in runs[1:])


def episode_end(settings: Any) -> dict[str, Any]:
    """`games.EpisodeEnd`'s fields from a substrate's lab2d settings: `maxEpisodeLengthFrames`, the scene's
    `StochasticIntervalEpisodeEnding` (its first chance comes `intervalLength` - 1 steps after
    `minimumFramesPerEpisode`: the engine's timing, tests/test_episode_end.py) and an interaction zapper's
    `endEpisodeOnFirstInteraction`."""
    sim = settings.simulation
    end: dict[str, Any] = {"max_steps": int(settings["maxEpisodeLengthFrames"]), "first": 0, "interval": 0,
                           "probability": 0.0, "after_interaction": False}
    for comp in sim.get("scene", {}).get("components", []):
        if comp["component"] == "StochasticIntervalEpisodeEnding":
            kw = comp["kwargs"]
            end.update(first=int(kw["minimumFramesPerEpisode"]) + int(kw["intervalLength"]) - 1,
                       interval=int(kw["intervalLength"]), probability=float(kw["probabilityTerminationPerInterval"]))
    objects = list(sim.get("gameObjects", [])) + list(sim.get("prefabs", {}).values())
    end["after_interaction"] = any(comp.get("kwargs", {}).get("endEpisodeOnFirstInteraction", False)
                                   for obj in objects for comp in obj.get("components", []))
    return end


def episode_end_of(name: str) -> dict[str, Any]:
    """One substrate's `episode_end` entry, from its settings with the default roles (no world is built)."""
    from actionparty_env.meltingpot_import import get_config
    from actionparty_env.real import build_lab2d_settings

    return episode_end(build_lab2d_settings(name, tuple(get_config(name).default_player_roles), seed=0)[1])


def describe(name: str) -> dict[str, Any]:
    """One substrate's catalog entry, from its config and one built world."""
    import dmlab2d
    import numpy as np

    from actionparty_env.meltingpot_import import builder, get_config
    from actionparty_env.real import build_lab2d_settings

    roles = tuple(get_config(name).default_player_roles)
    cfg, s = build_lab2d_settings(name, roles, seed=0)
    flat = builder.parse_python_settings_for_dmlab2d(s)
    other = builder.parse_python_settings_for_dmlab2d(build_lab2d_settings(name, roles, seed=1)[1])
    flat["env_seed"] = "1"
    raw = dmlab2d.Lab2d(builder._DMLAB2D_ROOT, flat)
    raw.start(episode=0, seed=1)
    frame = np.asarray(raw.observation("WORLD.RGB"))
    view = np.asarray(raw.observation("1.RGB"))
    if view.shape[0] != view.shape[1] or frame.shape[0] % 8 or frame.shape[1] % 8:
        raise RuntimeError(f"{name}: unexpected shapes frame {frame.shape} view {view.shape}")
    action_set = [dict(a) for a in cfg.action_set]
    v = {**_avatar_view(s), "torus": s.get("topology") == "TORUS"}  # views wrap on a torus map
    if (v["forward"] + v["backward"] + 1) * 8 != view.shape[0]:
        raise RuntimeError(f"{name}: view kwargs {v} do not match the {view.shape} view")
    return {
        "name": name,
        "num_players": len(roles),
        "roles": list(roles),
        "valid_roles": sorted(cfg.valid_roles),
        "action_names": action_names(name, action_set),
        "action_set": action_set,
        "map_rows": frame.shape[0] // 8,
        "map_cols": frame.shape[1] // 8,
        "map_varies": flat != {**other, "env_seed": "1"},
        "view": v,
        "view_px": int(view.shape[0]),
        "identity_visible": _identity_visible(name),
        "player_counts": player_counts(name),
        "seed_replays": seed_replays(name),
        "episode_end": episode_end(s),
    }


def _describe_in_subprocess(name: str, what: str = "--one") -> dict[str, Any]:
    cmd = [sys.executable, "-m", "training.catalog", what, name]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=CATALOG_PATH.parents[2])
    if out.returncode != 0:
        raise RuntimeError(f"{name}: catalog worker failed ({out.returncode}):\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def write_catalog(path: Path = CATALOG_PATH, workers: int | None = None) -> list[dict[str, Any]]:
    from tqdm import tqdm

    from actionparty_env.real import substrate_names

    names = substrate_names()
    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        games = list(tqdm(pool.map(_describe_in_subprocess, names), total=len(names), desc="catalog"))
    doc = {"generated_by": "python -m training.catalog", "meltingpot": "dm-meltingpot 2.4.1", "games": games}
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return games


def add_field(field: str, flag: str, path: Path = CATALOG_PATH, workers: int | None = None) -> dict[str, Any]:
    """Fill in (only) `field` of every entry of an existing catalog file, one subprocess per substrate
    running `python -m training.catalog FLAG NAME` (a worker whose Lua aborts gives None)."""
    from tqdm import tqdm

    def one(name: str) -> Any:
        try:
            return _describe_in_subprocess(name, flag)
        except RuntimeError:
            return None

    doc = json.loads(path.read_text())
    names = [g["name"] for g in doc["games"]]
    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        values = list(tqdm(pool.map(one, names), total=len(names), desc=field))
    for game, value in zip(doc["games"], values):
        game[field] = value
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return dict(zip(names, values))


def add_player_counts(path: Path = CATALOG_PATH, workers: int | None = None) -> dict[str, list[int]]:
    """Fill in (only) every entry's `player_counts` of an existing catalog file."""
    return add_field("player_counts", "--counts", path, workers)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m training.catalog", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--one", metavar="SUBSTRATE", help="print one substrate's entry as JSON and exit")
    p.add_argument("--counts", metavar="SUBSTRATE", help="print one substrate's player counts as JSON and exit")
    p.add_argument("--replays", metavar="SUBSTRATE", help="print whether one substrate replays from a seed, as JSON")
    p.add_argument("--ends", metavar="SUBSTRATE", help="print one substrate's episode_end entry as JSON and exit")
    p.add_argument("--player-counts", action="store_true",
                   help="only fill in player_counts of the existing catalog (the other fields stay)")
    p.add_argument("--seed-replays", action="store_true",
                   help="only fill in seed_replays of the existing catalog (the other fields stay)")
    p.add_argument("--episode-ends", action="store_true",
                   help="only fill in episode_end of the existing catalog (the other fields stay)")
    p.add_argument("--out", type=Path, default=CATALOG_PATH)
    p.add_argument("--workers", type=int, default=None)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(describe(args.one)))
        return
    if args.counts:
        print(json.dumps(player_counts(args.counts)))
        return
    if args.replays:
        print(json.dumps(seed_replays(args.replays)))
        return
    if args.ends:
        print(json.dumps(episode_end_of(args.ends)))
        return
    if args.player_counts:
        counts = add_player_counts(args.out, args.workers)
        print(f"wrote player_counts of {len(counts)} games to {args.out}")
        return
    if args.seed_replays:
        replays = add_field("seed_replays", "--replays", args.out, args.workers)
        print(f"wrote seed_replays of {len(replays)} games to {args.out}: "
              f"{sum(v is True for v in replays.values())} replay from a seed")
        return
    if args.episode_ends:
        ends = add_field("episode_end", "--ends", args.out, args.workers)
        print(f"wrote episode_end of {len(ends)} games to {args.out}")
        return
    games = write_catalog(args.out, args.workers)
    print(f"wrote {len(games)} games to {args.out}")


if __name__ == "__main__":
    main()
