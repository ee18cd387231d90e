"""`actionparty play --interactive` and `actionparty replay` (actionparty_env/play.py), headless.

The pygame loop runs under SDL_VIDEODRIVER=dummy, driven by scripted key sequences posted as key events
(the same loop a person drives). Whether the keys move the controlled player is checked against the
real Melting Pot (side by side: its infos are the game's own ground truth) and, through the dream env,
on `GridRules`, a deterministic simulator of the movement rule (the tiny random model of conftest.py
cannot follow actions; the bundled one is too slow for a test on two cores). Recordings replay on the
tiny model: the same frames in the dream, the same actions in the real game.
"""
from __future__ import annotations

import functools
import os
import sys

import numpy as np
import pytest
import torch

from actionparty_env import cli, play
from actionparty_env.env import parallel_env
from actionparty_env.games import get_game, load_catalog
from actionparty_env.grid import CELL, DIRS, MOVES, PlayerStates, TURNS
from actionparty_env.real import RealParallelEnv
from actionparty_env.simulator import StepResult
from tests.conftest import DREAM_SUBSTRATE as SUBSTRATE

os.environ["SDL_VIDEODRIVER"] = "dummy"
os.environ["SDL_AUDIODRIVER"] = "dummy"
pytestmark = pytest.mark.usefixtures("one_thread")
pygame = pytest.importorskip("pygame", reason="the play extra: pip install 'actionparty-env[play]'")
NAMES = get_game(SUBSTRATE).action_names


# ---------------------------------------------------------------------- the movement rule, for checking
def walls_of(frame: np.ndarray) -> np.ndarray:
    """bool [rows, cols]: cells drawn with the top-left cell's patch (coins: the wall around the map)."""
    h, w = frame.shape[0] // CELL, frame.shape[1] // CELL
    patches = frame.reshape(h, CELL, w, CELL, 3).transpose(0, 2, 1, 3, 4).reshape(h, w, -1)
    return (patches == patches[0, 0]).all(-1)


def rule_step(cells, facing, actions, walls):
    """Melting Pot's move and turn (grid.py): a move is one cell relative to the facing, refused into a
    wall or an occupied cell (moves taken in player order), a turn rotates; anything else stays."""
    cells, facing = [tuple(c) for c in cells], list(facing)
    for i, a in enumerate(actions):
        name = NAMES[a]
        if name in TURNS:
            facing[i] = (facing[i] + TURNS[name]) % 4
        elif name in MOVES:
            dr, dc = DIRS[(facing[i] + MOVES[name]) % 4]
            target = (cells[i][0] + dr, cells[i][1] + dc)
            inside = 0 <= target[0] < walls.shape[0] and 0 <= target[1] < walls.shape[1]
            if inside and not walls[target] and target not in cells:
                cells[i] = target
    return cells, facing


class GridRules:
    """A deterministic simulator of `rule_step` behind the Simulator protocol (frames unchanged)."""

    def __init__(self, num_players, num_worlds=1, device="cpu"):
        self.game, self.num_players, self.num_worlds, self.device = SUBSTRATE, num_players, num_worlds, torch.device(device)

    def reset(self, frames, players, worlds=None):
        self.frames = frames.clone()
        self.cells, self.facing, self.alive = players.cells.clone(), players.facing.clone(), players.alive.clone()
        self.walls = walls_of(frames[0].cpu().numpy())

    def step(self, actions):
        cells, facing = rule_step(self.cells[0].tolist(), self.facing[0].tolist(), actions[0].tolist(), self.walls)
        self.cells, self.facing = torch.tensor([cells]), torch.tensor([facing])
        return StepResult(self.frames, PlayerStates(self.cells, self.facing, self.alive), torch.zeros(1, self.num_players))


def expected_path(start_infos, agents, frame, controlled_actions):
    """Each step's (cells, facing) when the scripted player acts and the others stand still."""
    cells = [start_infos[a]["cell"] for a in agents]
    facing = [start_infos[a]["facing"] for a in agents]
    walls, path = walls_of(frame), []
    for who, action in controlled_actions:
        joint = [action if i == who else NAMES.index("NOOP") for i in range(len(agents))]
        cells, facing = rule_step(cells, facing, joint, walls)
        path.append((cells, facing))
    return path


def run_script(session, script, **kw):
    """Run the pygame loop on a script; returns the (cells, facing) of the played env after each step."""
    seen = []

    def on_tick(s, stepped):
        if stepped:
            infos = s.real_infos if s.real is not None else s.dream_infos
            seen.append(([infos[a]["cell"] for a in s.agents], [infos[a]["facing"] for a in s.agents]))

    result = play.run_window(session, fps=0, script=play.parse_script(script), on_tick=on_tick, **kw)
    return seen, result


@pytest.fixture(scope="module")
def checkpoint(dream_checkpoint):
    return dream_checkpoint  # tests/conftest.py: a tiny random model of coins with real start states and a sprite table


def rules_session(checkpoint, **kw):
    make = functools.partial(parallel_env, SUBSTRATE, checkpoint=checkpoint, device="cpu", simulator=GridRules)
    return play.PlaySession(make, others=play.NoopOthers(NAMES.index("NOOP")), **kw)


# ---------------------------------------------------------------------------------------------- keys
def test_keys_come_from_the_catalog_action_names():
    for game in load_catalog().values():
        keys = play.KeyMap.for_game(game)
        names = game.action_names
        assert names[keys.action("w")] == names[keys.action("up")] == "FORWARD"
        assert names[keys.action("s")] == "BACKWARD" and names[keys.action("left")] == "STEP_LEFT"
        assert names[keys.action("d")] == "STEP_RIGHT"
        assert names[keys.action("q")] == "TURN_LEFT" and names[keys.action("e")] == "TURN_RIGHT"
        assert keys.unmapped(game) == []  # every action of all 49 substrates is on a key
        own = [n for n in names if n not in play.BASE_ACTIONS]
        if own:
            assert names[keys.action("space")] == names[keys.action("1")] == own[0]
            assert [names[keys.action(k)] for k in (list(play.DIGITS) + [f"shift+{d}" for d in play.DIGITS])[:len(own)]] == own
            assert dict(keys.legend)["Space/1"] == own[0]  # shown on screen by name
        else:
            assert keys.action("space") is None
    clean_up = play.KeyMap.for_game(get_game("clean_up"))
    assert clean_up.action("[2]") == get_game("clean_up").action_names.index("FIRE_CLEAN")  # keypad digits too
    assert clean_up.action("shift+w") == clean_up.action("w") and clean_up.action("x") is None


def test_scripts_parse_into_ticks():
    assert play.parse_script("w*3 - tab,W shift+Tab . [1]") == [["w"], ["w"], ["w"], [], ["tab", "w"],
                                                                   ["shift+tab"], ["."], ["1"]]
    with pytest.raises(ValueError, match="repeat"):
        play.parse_script("w*0")


def test_missing_pygame_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pygame", None)
    with pytest.raises(RuntimeError, match=r"actionparty-env\[play\]"):
        play.import_pygame()


def test_frame_clock_keeps_the_rate_and_says_when_it_falls_behind():
    now, slept = [0.0], []
    clock = play.FrameClock(8, sleep=lambda s: (slept.append(s), now.__setitem__(0, now[0] + s)), now=lambda: now[0])
    for work in (0.01, 0.01, 0.3, 0.01):
        now[0] += work
        clock.stepped()
        clock.wait(True)
        assert clock.behind == (work > 0.125)
    assert slept[:2] == pytest.approx([0.115, 0.115]) and len(slept) == 3  # no sleep after the slow step


# ------------------------------------------------------------------------------ the loop, headless
def test_scripted_keys_move_the_player_in_the_real_game(checkpoint):
    """Side by side: the real Melting Pot's infos follow the keys (W forward, S back, A/D step, Q/E turn)."""
    real = RealParallelEnv(SUBSTRATE)
    session = play.PlaySession(functools.partial(parallel_env, SUBSTRATE, checkpoint=checkpoint, device="cpu",
                                                 start="real"), real,
                               others=play.NoopOthers(NAMES.index("NOOP")), seed=3)
    start, frame = dict(session.real_infos), session.real_frame
    assert np.array_equal(session.dream_frame, frame) and session.agreement() == 2  # one real start for both
    script = "w e w w s q q a d up right left down"
    keys = play.KeyMap.for_game(session.game)
    seen, result = run_script(session, script)
    want = expected_path(start, session.agents, frame, [(0, keys.action(k)) for k in script.split()])
    assert result["steps"] == len(script.split()) and seen == want
    moved = sum(a != b for (a, _), (b, _) in zip([([start[p]["cell"] for p in session.agents], 0)] + want, want))
    assert moved >= 4  # the script is no mere bumping into walls
    session.dream_infos = {a: {**session.real_infos[a], "expected_reward": 0.5} for a in session.agents}
    assert session.agreement() == 2  # the state, not the dream's extra keys
    session.close()


def test_tab_switches_the_player_and_pause_steps_one_frame(checkpoint, tmp_path):
    """Through the dream env on GridRules: Tab hands the keys to the next player, Shift+Tab back; P
    pauses, `.` steps once with the key pressed while paused; R starts the next episode."""
    session = rules_session(checkpoint, recording=play.new_recording({"substrate": SUBSTRATE,
                                                                      "agents": ["player_0", "player_1"]}))
    start, frame = dict(session.dream_infos), session.dream_frame
    w, e, d = (session.keys.action(k) for k in "wed")
    seen, _ = run_script(session, "w e tab,w tab,d shift+tab,w p w - . -", screenshot=tmp_path / "s.png")
    want = expected_path(start, session.agents, frame, [(0, w), (0, e), (1, w), (0, d), (1, w), (1, w)])
    assert seen == want
    assert session.recording.controlled == [0, 0, 1, 0, 1, 1]
    assert [row[1] for row in session.recording.actions] == [0, 0, w, 0, w, w]
    assert session.step_count == 6 and session.paused
    assert pygame.image.load(str(tmp_path / "s.png")).get_size()[0] >= 640  # the window's picture
    run_script(session, "r p w")  # R shows the new start for a tick; P resumes (a NOOP step), then W
    assert session.episode == 1 and session.step_count == 2 and session.recording.seeds == [0, 1]
    session.close()


def test_status_line_shows_step_returns_alive_speed_and_notes(checkpoint):
    session = rules_session(checkpoint, controlled=1)
    session.press("p")
    clock = play.FrameClock(8)
    clock.behind = True
    text = [" ".join(parts) for parts, _ in play.status_lines(session, clock)]
    assert "step 0/1000" in text[0] and "you: player_1" in text[0] and "loop - of 8 steps/s" in text[0]
    assert "PAUSED" in text[1] and "player_1* +0.0 alive" in text[2]
    session.press("p")
    session.tick()
    text = " ".join(" ".join(parts) for parts, _ in play.status_lines(session, clock))
    assert "model " in text and "cannot keep up with 8 steps/s" in text
    session.close()


# ------------------------------------------------------------------------------ recording and replay
def test_recording_replays_to_the_same_frames_in_the_dream_and_the_same_actions_in_the_real_game(
        checkpoint, tmp_path, capsys):
    """`actionparty play --keys ... --side-by-side --record` on the tiny model, then `replay`."""
    out = tmp_path / "session.gif"
    argv = ["play", SUBSTRATE, "--checkpoint", str(checkpoint), "--device", "cpu", "--side-by-side", "--fps", "0",
            "--keys", "w*2 e d tab a s q r w - e", "--record", str(out), "--seed", "4", "--temperature", "1"]
    assert cli.main(argv) == 0
    rec = play.Recording.load(out)  # the .npz beside the GIF
    assert out.stat().st_size > 0 and rec.num_steps == 11 and rec.seeds == [4, 5] and len(rec.starts) == 2
    assert rec.episode == [0] * 8 + [1] * 3 and rec.meta["side_by_side"]  # tab is a step too (NOOP), r is not

    frames = []
    dream = play.replay(rec, make_dream=lambda: parallel_env(SUBSTRATE, checkpoint=checkpoint, device="cpu",
                                                              temperature=1.0, start="real"))
    assert dream.compared == 13 and dream.matched == 13  # every dream frame, each episode's start included
    again = play.replay(rec, make_dream=lambda: parallel_env(SUBSTRATE, checkpoint=checkpoint, device="cpu",
                                                              temperature=1.0, start="real"),
                        on_frame=frames.append)
    assert all(np.array_equal(a, b) for a, b in zip(frames, dream.frames)) and len(frames) == 13
    assert again.matched == dream.matched  # the callback changes nothing the replay checks
    assert any(not np.array_equal(dream.frames[0], f) for f in dream.frames[1:9])  # the model drew something

    real = play.replay(rec, real=True)
    assert np.array_equal(real.actions, np.array(rec.actions)) and len(real.frames) == 13
    assert real.compared == 13  # frames of the real engine are compared but need not match: spawns vary

    capsys.readouterr()
    assert cli.main(["replay", str(out.with_suffix(".npz")), "--gif", str(tmp_path / "r.gif")]) == 0
    printed = capsys.readouterr().out
    assert "13 of 13 frames identical" in printed and (tmp_path / "r.gif").stat().st_size > 0


def test_mp4_recording_and_the_other_players_policy(checkpoint, tmp_path):
    """An MP4 through imageio-ffmpeg; the other players follow an SB3 policy loaded from a zip."""
    pytest.importorskip("imageio_ffmpeg")
    from stable_baselines3 import PPO

    from actionparty_env.vector import DreamVecEnv

    vec = DreamVecEnv(SUBSTRATE, num_worlds=1, checkpoint=checkpoint, device="cpu", channels_first=True)
    PPO("CnnPolicy", vec, n_steps=8, batch_size=8, device="cpu", seed=0).save(tmp_path / "policy")
    vec.close()
    others = play.PolicyOthers(tmp_path / "policy.zip", get_game(SUBSTRATE))
    session = rules_session(checkpoint)
    session.others = others
    video = play.VideoWriter(tmp_path / "s.mp4", fps=8)
    run_script(session, "w*3", video=video)
    assert video.close().stat().st_size > 0 and video.frames == 4  # the start, then each step
    assert 0 <= session.last_actions["player_1"] < get_game(SUBSTRATE).num_actions
    with pytest.raises(ValueError, match="clean_up has 9 actions"):
        play.PolicyOthers(tmp_path / "policy.zip", get_game("clean_up"))
    with pytest.raises(ValueError, match=r"observes \(3, 88, 88\)"):
        play.PolicyOthers(tmp_path / "policy.zip", get_game("collaborative_cooking__asymmetric"))
    session.close()


def test_gif_recording_keeps_one_size(tmp_path):
    from PIL import Image

    video = play.VideoWriter(tmp_path / "s.gif", fps=8)
    for h in (40, 48, 36):  # a status line that wrapped: pictures of other sizes are padded or cut
        video.add(np.full((h, 64, 3), h, np.uint8))
    with Image.open(video.close()) as gif:
        assert gif.size == (64, 40) and gif.n_frames == 3
    with pytest.raises(ValueError, match="mp4 or .gif"):
        play.VideoWriter(tmp_path / "s.avi", fps=8)


def test_play_flags_need_interactive(capsys):
    with pytest.raises(SystemExit):
        cli.main(["play", SUBSTRATE, "--side-by-side"])
    assert "need --interactive" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # an output path is checked before any work
        cli.main(["play", SUBSTRATE, "--interactive", "--record", "session.avi"])
    assert "must end in .mp4 or .gif" in capsys.readouterr().err
