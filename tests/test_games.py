"""The shipped game catalog: complete, self-consistent, and equal to what Melting Pot says."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from actionparty_env.games import GameSpec, get_game, load_catalog
from tests.conftest import ROOT

STANDARD = ("NOOP", "FORWARD", "BACKWARD", "STEP_LEFT", "STEP_RIGHT", "TURN_LEFT", "TURN_RIGHT")
HIDDEN_IDENTITY = {
    "bach_or_stravinsky_in_the_matrix__repeated", "chicken_in_the_matrix__repeated",
    "prisoners_dilemma_in_the_matrix__repeated", "pure_coordination_in_the_matrix__repeated",
    "rationalizable_coordination_in_the_matrix__repeated", "running_with_scissors_in_the_matrix__repeated",
    "stag_hunt_in_the_matrix__repeated", "running_with_scissors_in_the_matrix__one_shot",
    "pure_coordination_in_the_matrix__arena", "rationalizable_coordination_in_the_matrix__arena",
    "chemistry__three_metabolic_cycles", "chemistry__three_metabolic_cycles_with_plentiful_distractors",
    "chemistry__two_metabolic_cycles", "chemistry__two_metabolic_cycles_with_distractors",
}


def test_catalog_has_every_melting_pot_substrate():
    from actionparty_env.meltingpot_import import SUBSTRATES

    catalog = load_catalog()
    assert len(catalog) == 49
    assert list(catalog) == sorted(SUBSTRATES)


@pytest.mark.parametrize("name", sorted(load_catalog()))
def test_spec_is_consistent_with_melting_pot_config(name):
    from actionparty_env.meltingpot_import import get_config

    g, cfg = get_game(name), get_config(name)
    assert g.roles == tuple(cfg.default_player_roles) and g.num_players == len(g.roles)
    assert set(g.valid_roles) == set(cfg.valid_roles)
    assert [dict(a) for a in cfg.action_set] == list(g.action_set)
    assert g.action_names[:7] == STANDARD and len(set(g.action_names)) == g.num_actions == len(g.action_set)
    assert g.view_px == g.view_cells[0] * 8 == g.view_cells[1] * 8
    assert g.identity_visible == (name not in HIDDEN_IDENTITY)
    assert g.map_varies == (name == "coins")


def test_known_facts():
    assert get_game("clean_up").action_names[7:] == ("FIRE_ZAP", "FIRE_CLEAN")
    assert (get_game("clean_up").map_rows, get_game("clean_up").map_cols) == (21, 30)
    assert get_game("collaborative_cooking__asymmetric").view_px == 40
    assert get_game("commons_harvest__open").view == {"left": 5, "right": 5, "forward": 9, "backward": 1,
                                                       "centered": False, "torus": False}
    assert get_game("territory__rooms").view["torus"] and get_game("allelopathic_harvest__open").view["torus"]
    assert get_game("hidden_agenda").action_names[-6:] == tuple(f"VOTE_{i}" for i in range(1, 7))


def test_regenerated_entry_equals_shipped():
    """`python -m training.catalog --one NAME` (what the generator runs per game) matches the file."""
    out = subprocess.run([sys.executable, "-m", "training.catalog", "--one", "clean_up"], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == get_game("clean_up").to_dict()


def test_round_trip_and_unknown_name():
    g = get_game("coins")
    assert GameSpec.from_dict(json.loads(json.dumps(g.to_dict()))) == g
    with pytest.raises(ValueError, match=r"unknown substrate 'cleanup'.*clean_up"):
        get_game("cleanup")
