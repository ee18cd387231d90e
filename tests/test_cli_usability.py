"""The `actionparty` command as a new user meets it: a progress bar for long work, output paths checked
before the work starts, every subcommand with its own usage line and help text, the same checkpoint
default across benchmarks, and a command group (`actionparty dataset`) that prints its usage."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from actionparty_env import cli
from actionparty_env.cli import main
from actionparty_env.model.checkpoint import DEFAULT_CHECKPOINT

SUBSTRATE = "coins"


@pytest.fixture(scope="module")
def ck(coins_checkpoint) -> Path:
    return coins_checkpoint


def test_play_shows_a_progress_bar(ck, capsys):
    assert main(["play", SUBSTRATE, "--checkpoint", str(ck), "--device", "cpu", "--steps", "3"]) == 0
    captured = capsys.readouterr()
    # tqdm redraws at most every 0.1 s, so which counts it shows depends on speed: its total is what it says
    assert "coins (actionparty_dream_v0)" in captured.err and "/3 [" in captured.err and "step" in captured.err
    assert "coins: 3 steps with 2 players" in captured.out  # the summary stays on stdout
    assert main(["play", SUBSTRATE, "--checkpoint", str(ck), "--device", "cpu", "--steps", "2", "--no-progress"]) == 0
    assert "actionparty_dream_v0" not in capsys.readouterr().err  # no bar at all


@pytest.mark.parametrize("command", ["play", "real"])
def test_an_unwritable_gif_fails_before_any_work(command, tmp_path, monkeypatch, capsys):
    import actionparty_env.env
    import actionparty_env.real

    def no_work(*args, **kwargs):
        raise AssertionError("an env was built before the output path was checked")

    monkeypatch.setattr(actionparty_env.env, "parallel_env", no_work)
    monkeypatch.setattr(actionparty_env.real, "RealParallelEnv", no_work)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    for gif, why in [(blocker / "out.gif", "cannot write to"), (tmp_path / "out.png", "must end in .gif"),
                     (tmp_path, "must end in .gif")]:
        with pytest.raises(SystemExit) as e:
            main([command, SUBSTRATE, "--gif", str(gif)])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert f"actionparty {command}: error: argument --gif: " in err and why in err
    assert cli.output_file(str(tmp_path / "new" / "folder" / "x.gif")) == tmp_path / "new" / "folder" / "x.gif"


def subcommands() -> list[str]:
    return sorted(cli.available_commands())


@pytest.mark.parametrize("name", subcommands())
def test_every_subcommand_has_its_own_usage_line_and_help(name, capsys):
    with pytest.raises(SystemExit) as e:
        main([*name.split(), "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: actionparty {name} "), out[:200]
    description = out.split("\n\n")[1].strip()  # argparse: usage, blank line, description
    assert description and not description.startswith(("positional", "options")), out[:400]


def own_parsers() -> dict[str, argparse.ArgumentParser]:
    """The parsers cli.py builds itself (catalog, real, play), caught as they parse `--help`."""
    made = {}
    real_parse = argparse.ArgumentParser.parse_args

    def spy(self, args=None, namespace=None):
        made[self.prog] = self
        return real_parse(self, args, namespace)

    argparse.ArgumentParser.parse_args = spy
    try:
        for name in ("catalog", "real", "play"):
            with pytest.raises(SystemExit):
                main([name, "--help"])
    finally:
        argparse.ArgumentParser.parse_args = real_parse
    return made


def test_every_option_of_the_runtime_commands_has_help_text(capsys):
    parsers = own_parsers()
    assert {"actionparty catalog", "actionparty real", "actionparty play"} <= set(parsers)
    for prog, parser in parsers.items():
        for action in parser._actions:
            assert action.help, f"{prog}: {'/'.join(action.option_strings) or action.dest} has no help text"


def test_actionparty_dataset_prints_its_usage(capsys):
    assert main(["dataset"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: actionparty dataset COMMAND") and "check" in out and "split" in out
    assert main(["benchmark"]) == 0 and "speed" in capsys.readouterr().out
    assert main(["dataset", "nope"]) == 2
    assert "unknown command 'dataset nope'" in capsys.readouterr().err


def test_benchmark_speed_defaults_to_the_bundled_checkpoint_like_fidelity(monkeypatch, tmp_path, capsys):
    import benchmarks.speed as speed

    seen = []

    def measure(record, substrate, checkpoint, *args, **kwargs):
        seen.append(Path(checkpoint))

    monkeypatch.setattr(speed, "measure_substrate", measure)
    assert main(["benchmark", "speed", "--device", "cpu", "--substrates", SUBSTRATE, "--batches", "1",
                 "--out-dir", str(tmp_path)]) == 0
    assert seen == [DEFAULT_CHECKPOINT] and (tmp_path / "speed_cpu.json").is_file()
    with pytest.raises(SystemExit):
        main(["benchmark", "fidelity", "--help"])
    assert "default: the bundled one" in capsys.readouterr().out
