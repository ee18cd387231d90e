"""Everything is checked in the env constructors, before any model call: the device (CUDA without a GPU,
an unknown name or a GPU index out of range is a ValueError naming what torch has), the checkpoint's
tensor shapes and the start states; the CLI answers each in one line with exit code 2."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from actionparty_env.env import DreamConfig, DreamParallelEnv, DreamWorlds, parallel_env, resolve_device
from actionparty_env.model.checkpoint import CheckpointError, refresh_digests
from actionparty_env.simulator import StartState, StartStates
from actionparty_env.vector import DreamVecEnv

SUBSTRATE = "coins"


@pytest.fixture
def ck(coins_checkpoint_copy) -> Path:  # conftest's tiny coins checkpoint, a fresh copy to damage
    return coins_checkpoint_copy


# Every dream constructor takes DreamConfig's fields as keywords and checks them in DreamConfig alone.
DREAM_CONSTRUCTORS = {
    "DreamWorlds": lambda **kw: DreamWorlds(SUBSTRATE, num_worlds=2, **kw),
    "DreamParallelEnv": lambda **kw: DreamParallelEnv(SUBSTRATE, **kw),
    "parallel_env": lambda **kw: parallel_env(SUBSTRATE, **kw),
    "DreamVecEnv": lambda **kw: DreamVecEnv(SUBSTRATE, 2, **kw),
}
BAD_OPTIONS = [  # (keyword, bad value, what the message says)
    ("num_players", 0, "coins does not take 0 players"),
    ("num_players", 2.0, "num_players must be an int or None"),
    ("checkpoint", 3, "checkpoint must be a folder"),
    ("device", "banana", "device must be .* got 'banana'"),
    ("sampling_steps", 17, r"sampling_steps must be an int in 1\.\.16"),
    ("temperature", -1.0, "temperature must be a float >= 0"),
    ("start", "fresh", "start must be 'bundled'"),
    ("simulator", "copy_last", "simulator must be a Simulator"),
    ("consistent_sprites", "yes", "consistent_sprites must be True or False"),
    ("cuda_graph", "on", "cuda_graph must be True or False"),
    ("compile", 1, "compile must be True or False"),
    ("decoding", "greedy", "decoding must be one of calibrated, argmax"),
]


@pytest.mark.parametrize("name", DREAM_CONSTRUCTORS)
@pytest.mark.parametrize("keyword, value, message", BAD_OPTIONS, ids=[f"{k}={v!r}" for k, v, _ in BAD_OPTIONS])
def test_every_dream_constructor_names_a_bad_option(ck, name, keyword, value, message):
    options = {"checkpoint": ck, "device": "cpu", keyword: value}
    with pytest.raises(ValueError, match=message):
        DREAM_CONSTRUCTORS[name](**options)
    with pytest.raises(TypeError, match="no_such_option"):  # a misspelt keyword is not silently dropped
        DREAM_CONSTRUCTORS[name](checkpoint=ck, device="cpu", no_such_option=1)


def test_dream_config_resolves_the_defaults_and_reads_no_file(tmp_path):
    config = DreamConfig(SUBSTRATE, checkpoint=tmp_path / "not_there", device="cpu", sampling_steps=2)
    assert config.num_players == config.game.num_players and config.checkpoint == tmp_path / "not_there"
    assert config.device == torch.device("cpu") and config.start == "bundled"
    assert config.simulator_kwargs() == {"sampling_steps": 2, "consistent_sprites": True,  # None keeps the default
                                         "cuda_graph": True, "compile": False}
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.temperature = 1.0
    with pytest.raises(ValueError, match="coinz"):
        DreamConfig("coinz")


def test_a_dream_vec_env_pickles_with_its_options(ck):
    import pickle

    env = DreamVecEnv(SUBSTRATE, 2, checkpoint=ck, device="cpu", temperature=0.5, decoding="argmax", max_cycles=5)
    copy = pickle.loads(pickle.dumps(env))
    assert copy.dream.config == env.dream.config and copy.max_cycles == 5 and copy.num_envs == 4


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.mark.parametrize("make", [
    lambda ck, device: parallel_env(SUBSTRATE, checkpoint=ck, device=device),
    lambda ck, device: DreamVecEnv(SUBSTRATE, 2, checkpoint=ck, device=device),
], ids=["parallel_env", "DreamVecEnv"])
def test_cuda_without_a_gpu_is_a_value_error_in_the_constructor(ck, no_cuda, make):
    for device in ("cuda", "cuda:0", torch.device("cuda")):
        with pytest.raises(ValueError, match=r"device .*cuda.*(without CUDA|sees no GPU); this torch has: cpu"):
            make(ck, device)
    assert make(ck, "auto").__class__.__name__ in ("DreamParallelEnv", "DreamVecEnv")  # auto falls back to the CPU


@pytest.mark.parametrize("device", ["tpu", "banana", "gpu", "", 3, None, "cuda:x"])
def test_unknown_devices_are_value_errors_naming_what_torch_has(ck, device):
    with pytest.raises(ValueError, match=r"this torch has: cpu|device must be"):
        parallel_env(SUBSTRATE, checkpoint=ck, device=device)


def test_gpu_index_out_of_range(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match="there are 1 GPUs"):
        resolve_device("cuda:3")
    assert resolve_device("cuda:0") == torch.device("cuda:0")


def test_a_wrong_tensor_shape_fails_in_the_constructor(ck):
    shard = sorted(ck.glob("model-*.safetensors"))[0]
    tensors = load_file(str(shard))
    key = next(k for k, v in tensors.items() if v.ndim == 2)
    tensors[key] = tensors[key][:-1].clone()  # one row short, header and digests consistent
    save_file(tensors, str(shard))
    refresh_digests(ck)
    with pytest.raises(CheckpointError, match=rf"{shard.name}: tensor '{key}' has shape"):
        parallel_env(SUBSTRATE, checkpoint=ck, device="cpu")
    with pytest.raises(CheckpointError, match=shard.name):
        DreamVecEnv(SUBSTRATE, 2, checkpoint=ck, device="cpu")


def test_bad_start_states_fail_in_the_constructor(ck):
    good = StartStates.load(ck).states[SUBSTRATE][0]
    bad = StartState(good.frame[:-3], good.players)  # not a whole number of cells
    StartStates({SUBSTRATE: [bad]}).save(ck)  # the writer records the new digest: only the content is wrong
    with pytest.raises(ValueError, match=r"start_states.npz: coins/0: frame has shape"):
        parallel_env(SUBSTRATE, checkpoint=ck, device="cpu")
    one = StartState(good.frame, good.players.first(1))
    StartStates({SUBSTRATE: [one]}).save(ck)
    with pytest.raises(ValueError, match=r"have at most 1 players; num_players=2 needs start='real'"):
        parallel_env(SUBSTRATE, checkpoint=ck, device="cpu")


def test_cli_says_what_is_wrong_in_one_line(ck, no_cuda, capsys):
    from actionparty_env.cli import main

    assert main(["play", SUBSTRATE, "--checkpoint", str(ck), "--device", "cuda", "--steps", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("actionparty: error: device 'cuda'") and "\n" not in err and "Traceback" not in err
    cfg = json.loads((ck / "config.json").read_text())
    cfg["model"]["dim"] = 24  # the weights no longer fit the architecture
    (ck / "config.json").write_text(json.dumps(cfg))
    assert main(["play", SUBSTRATE, "--checkpoint", str(ck), "--device", "cpu", "--steps", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("actionparty: error: ") and "has shape" in err and "\n" not in err
    cfg["model"]["no_such_field"] = 1  # the model cannot be built
    (ck / "config.json").write_text(json.dumps(cfg))
    assert main(["play", SUBSTRATE, "--checkpoint", str(ck), "--device", "cpu", "--steps", "2"]) == 2
    assert "bad model description" in capsys.readouterr().err
