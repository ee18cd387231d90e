"""Checkpoints are verified before use: config.json holds the SHA-256 of every shard and artefact
(written by save_checkpoint and by every artefact writer, refreshed by `training.bundle
--refresh-digests`), a changed or missing file is a CheckpointError naming it, in the env constructor
and in the CLI (one line, exit 2); a checkpoint without sprites.npz says the sprite constraint is off.

The checkpoint here is a tiny random model of coins whose codebook and start states come from the
bundled checkpoint's coins start states (no Melting Pot needed)."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from actionparty_env.digests import DIGESTS_KEY, sha256_file
from actionparty_env.env import parallel_env
from actionparty_env.model.checkpoint import (DEFAULT_CHECKPOINT, CheckpointError, CheckpointWarning,
                                              check_checkpoint, load_world_model)
from actionparty_env.model.sprites import SPRITES_FILE, save_sprite_tables
from actionparty_env.simulator import START_STATES_FILE, StartStates
from tests.conftest import tiny_coins_model

SUBSTRATE = "coins"


@pytest.fixture
def ck(coins_checkpoint_copy) -> Path:  # conftest's tiny coins checkpoint, a fresh copy to damage
    return coins_checkpoint_copy


def config(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


def corrupt_tail(path: Path) -> None:
    """Change the last bytes of a file (a safetensors shard's data; its header stays intact)."""
    data = bytearray(path.read_bytes())
    data[-8:] = bytes(0xFF for _ in range(8))
    path.write_bytes(bytes(data))


def dream(folder: Path, **kw):
    return parallel_env(SUBSTRATE, checkpoint=folder, device="cpu", **kw)


def test_every_shard_and_artefact_has_its_digest_in_config(coins_checkpoint):
    table = config(coins_checkpoint)[DIGESTS_KEY]
    shards = sorted(config(coins_checkpoint)["shards"])
    assert sorted(table) == sorted([*shards, SPRITES_FILE, START_STATES_FILE])
    for name, digest in table.items():
        assert digest == sha256_file(coins_checkpoint / name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # verified: no warning at all
        check_checkpoint(coins_checkpoint)
        dream(coins_checkpoint).reset(seed=0)


def test_bundled_checkpoint_is_verified():
    table = config(DEFAULT_CHECKPOINT)[DIGESTS_KEY]
    files = sorted(p.name for p in DEFAULT_CHECKPOINT.iterdir() if p.name != "config.json")
    assert sorted(table) == files  # three shards, sprites.npz, start_states.npz, view_tables.npz
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_checkpoint(DEFAULT_CHECKPOINT)


def test_corrupted_shard_data_is_a_checkpoint_error_naming_the_shard(ck):
    shard = sorted(ck.glob("model-*.safetensors"))[-1]
    corrupt_tail(shard)
    with pytest.raises(CheckpointError, match=rf"{shard.name}: SHA-256 .* does not match"):
        load_world_model(ck)
    with pytest.raises(CheckpointError, match=shard.name):
        dream(ck)  # in the constructor, not at the first reset


def test_nan_weights_without_digests_are_a_checkpoint_error(ck):
    cfg = config(ck)
    del cfg[DIGESTS_KEY]
    (ck / "config.json").write_text(json.dumps(cfg))
    from safetensors.torch import load_file, save_file

    shard = sorted(ck.glob("model-*.safetensors"))[0]
    tensors = load_file(str(shard))
    key = next(k for k, v in tensors.items() if v.is_floating_point())
    tensors[key].view(-1)[0] = float("nan")  # same names, shapes and size: only the data differ
    save_file(tensors, str(shard))
    with pytest.warns(CheckpointWarning, match="no SHA-256 digests"), pytest.raises(CheckpointError, match="NaN"):
        load_world_model(ck)


@pytest.mark.parametrize("name", [SPRITES_FILE, START_STATES_FILE])
def test_corrupted_or_missing_artefact_is_a_checkpoint_error(ck, name):
    corrupt_tail(ck / name)
    with pytest.raises(CheckpointError, match=rf"{name}: SHA-256"):
        dream(ck)
    (ck / name).unlink()
    with pytest.raises(CheckpointError, match=rf"{name}: missing; .*config.json says the checkpoint has it"):
        dream(ck)


def test_without_sprites_the_env_says_the_constraint_is_off(ck):
    cfg = config(ck)
    del cfg[DIGESTS_KEY][SPRITES_FILE]  # a checkpoint that never had a sprite table
    (ck / "config.json").write_text(json.dumps(cfg))
    (ck / SPRITES_FILE).unlink()
    with pytest.warns(CheckpointWarning, match=r"sprites.npz is missing, so the sprite constraint is off"):
        env = dream(ck)
    assert env.dream.sprite_constraint is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dream(ck, consistent_sprites=False).dream.sprite_constraint is False  # off on purpose: silent
    save_sprite_tables(ck, {"clean_up": tiny_coins_model().sprite_tables[SUBSTRATE]})  # a table, not for coins
    with pytest.warns(CheckpointWarning, match="has no sprite table for coins"):
        dream(ck)


def test_old_config_without_digests_loads_with_a_warning(ck):
    cfg = config(ck)
    del cfg[DIGESTS_KEY]
    (ck / "config.json").write_text(json.dumps(cfg))
    with pytest.warns(CheckpointWarning, match="no SHA-256 digests .* --refresh-digests"):
        env = dream(ck)
    env.reset(seed=0)
    # Artefact writers leave an old config alone (they only add to a table that is there) ...
    StartStates.load(ck).save(ck)
    assert DIGESTS_KEY not in config(ck)


def test_refresh_digests_command_writes_the_table_and_leaves_the_weights(ck, capsys):
    from training.bundle import main as bundle

    cfg = config(ck)
    del cfg[DIGESTS_KEY]
    (ck / "config.json").write_text(json.dumps(cfg))
    before = {p.name: p.read_bytes() for p in ck.glob("model-*")}
    bundle(["--refresh-digests", str(ck)])
    assert {p.name: p.read_bytes() for p in ck.glob("model-*")} == before
    assert sorted(config(ck)[DIGESTS_KEY]) == sorted([*before, SPRITES_FILE, START_STATES_FILE])
    assert sha256_file(ck / SPRITES_FILE) in capsys.readouterr().out
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_checkpoint(ck)


def test_artefact_writers_keep_the_table_current(ck):
    states = StartStates.load(ck).states[SUBSTRATE]
    StartStates({SUBSTRATE: states[:1]}).save(ck)  # rewritten: a new file, its digest recorded
    assert config(ck)[DIGESTS_KEY][START_STATES_FILE] == sha256_file(ck / START_STATES_FILE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_checkpoint(ck)


def test_cli_answers_a_bad_checkpoint_in_one_line(ck, capsys):
    from actionparty_env.cli import main

    corrupt_tail(ck / START_STATES_FILE)
    assert main(["play", SUBSTRATE, "--checkpoint", str(ck), "--device", "cpu", "--steps", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("actionparty: error: ") and "start_states.npz: SHA-256" in err and "\n" not in err
