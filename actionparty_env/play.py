"""Play the dream: a person controls one player, the others act randomly or follow an SB3 policy,
optionally with the real Melting Pot beside the dream, fed the same actions from the same start.

    actionparty play coins --interactive                      # a pygame window at 8 steps/s
    actionparty play coins --interactive --side-by-side       # real | dream, the same actions
    actionparty play coins --interactive --record out/s.mp4   # + out/s.npz: actions, start states, frame hashes
    actionparty replay out/s.npz [--real] [--gif out/r.gif]   # the recording again, in the dream or the real game
    SDL_VIDEODRIVER=dummy actionparty play coins --keys "w*3 e d tab w" --screenshot out/s.png   # headless

Keys: W/A/S/D or the arrows move (forward, step left, backward, step right, relative to the facing, as
Melting Pot's own human play), Q/E turn, Space and 1..9, 0 (Shift+digit for the 11th to 20th) the
substrate's own actions (named on screen from the catalog), Tab (Shift+Tab) switches the controlled
player, R starts the next episode, P pauses, `.` steps one frame while paused, Esc quits. A key held
down repeats its action every step; with no key the controlled player does NOOP.

The parts that need no window are separate from pygame (and tested without one): `KeyMap` (key names
-> action indices, from the catalog's action names), `parse_script` (a scripted key sequence),
`PlaySession` (the loop's state and its step: keys, the controlled and the other players' actions,
both envs, returns, the recording), `picture` (what the window shows, a numpy image with its text
drawn by PIL, so a recording and a screenshot are exactly the window), `FrameClock` (the fixed frame
rate), `Recording` and `replay`. `run_window` is the pygame loop; a script drives that same loop by
posting key events, which is how it runs headless under SDL_VIDEODRIVER=dummy. pygame (and
imageio-ffmpeg for MP4) are imported only inside functions here: `pip install actionparty-env[play]`.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from actionparty_env.games import GameSpec
from actionparty_env.grid import CELL, PlayerStates
from actionparty_env.simulator import StartState, StartStates

PLAY_EXTRA = "pip install 'actionparty-env[play]'  (or: pip install pygame imageio-ffmpeg)"
RECORDING_VERSION = 1
BASE_ACTIONS = ("NOOP", "FORWARD", "BACKWARD", "STEP_LEFT", "STEP_RIGHT", "TURN_LEFT", "TURN_RIGHT")
# Movement keys by action name (the catalog names them; indices come from the game's own order).
MOVE_KEYS = {"FORWARD": ("w", "up"), "BACKWARD": ("s", "down"), "STEP_LEFT": ("a", "left"),
             "STEP_RIGHT": ("d", "right"), "TURN_LEFT": ("q",), "TURN_RIGHT": ("e",)}
DIGITS = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "0")
CONTROL_KEYS = {"tab": "next player", "shift+tab": "previous player", "r": "reset", "p": "pause",
                ".": "step one frame (paused)", "escape": "quit"}
KEY_LABELS = {"up": "Up", "down": "Down", "left": "Left", "right": "Right", "space": "Space"}


# ---------------------------------------------------------------------------------------- keys
@dataclass(frozen=True)
class KeyMap:
    """Key names (pygame's `key.name`, shifted digits as "shift+1") -> the game's action indices.

    Built from the catalog's action names, so every substrate gets its own keys: movement and turns
    by name, and the substrate's own actions (zap, clean, interact, ...) on Space (the first one) and
    on the digits in the catalog's order (1..9, 0, then Shift+1..Shift+0)."""

    actions: dict[str, int]
    legend: tuple[tuple[str, str], ...]  # (keys, action name), for the screen
    noop: int

    @classmethod
    def for_game(cls, game: GameSpec) -> "KeyMap":
        names = list(game.action_names)
        actions: dict[str, int] = {}
        legend: list[tuple[str, str]] = []
        for name, keys in MOVE_KEYS.items():
            if name in names:
                actions.update({k: names.index(name) for k in keys})
                legend.append(("/".join(KEY_LABELS.get(k, k.upper()) for k in keys), name))
        own = [i for i, n in enumerate(names) if n not in BASE_ACTIONS]
        digit_keys = list(DIGITS) + [f"shift+{d}" for d in DIGITS]
        for j, index in enumerate(own[:len(digit_keys)]):
            keys = [digit_keys[j]] + (["space"] if j == 0 else [])
            actions.update({k: index for k in keys})
            legend.append(("/".join(KEY_LABELS.get(k, k.replace("shift+", "Shift+")) for k in reversed(keys)),
                           names[index]))
        return cls(actions, tuple(legend), names.index("NOOP") if "NOOP" in names else 0)

    def action(self, key: str) -> int | None:
        return self.actions.get(normalise_key(key))

    def unmapped(self, game: GameSpec) -> list[str]:
        """Action names no key reaches (only games with more than 20 own actions have any)."""
        reached = set(self.actions.values()) | {self.noop}
        return [n for i, n in enumerate(game.action_names) if i not in reached]


def normalise_key(key: str) -> str:
    """One spelling per key: lower case, keypad digits as digits ("[1]" -> "1"), "Shift+X" as "shift+x"."""
    key = key.strip().lower()
    if len(key) == 3 and key[0] == "[" and key[2] == "]" and key[1].isdigit():
        key = key[1]
    if key.startswith("shift+") and key[6:] not in DIGITS + ("tab",):
        key = key[6:]  # Shift matters only for the digits and Tab
    return key


def parse_script(text: str | Sequence[str]) -> list[list[str]]:
    """A scripted key sequence: whitespace-separated ticks, each a comma-separated list of keys pressed
    (and released) in that tick; `-` is a tick with no key (the controlled player does NOOP), `KEY*n`
    repeats a tick n times. "w*3 e tab,w p . ." = three forward steps, a right turn, Tab then forward
    in one tick, pause, two single steps."""
    tokens = text.split() if isinstance(text, str) else list(text)
    ticks: list[list[str]] = []
    for token in tokens:
        body, _, count = token.rpartition("*") if "*" in token[1:] else (token, "", "1")
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"bad repeat in script token {token!r}: expected KEY*n with n >= 1")
        keys = [] if body == "-" else [normalise_key(k) for k in body.split(",") if k]
        ticks.extend([list(keys) for _ in range(int(count))])
    return ticks


# ------------------------------------------------------------------------------- the other players
class RandomOthers:
    """Uniformly random actions for the players no person controls (seeded)."""

    def __init__(self, num_actions: int, seed: int = 0):
        self.num_actions, self.rng = int(num_actions), np.random.default_rng(seed)

    def __call__(self, observations: dict[str, np.ndarray], agents: Sequence[str]) -> dict[str, int]:
        return {a: int(self.rng.integers(self.num_actions)) for a in agents}


class NoopOthers:
    """The other players stand still (tests, or a person exploring alone)."""

    def __init__(self, noop: int = 0):
        self.noop = int(noop)

    def __call__(self, observations: dict[str, np.ndarray], agents: Sequence[str]) -> dict[str, int]:
        return dict.fromkeys(agents, self.noop)


class PolicyOthers:
    """A stable-baselines3 policy (PPO, A2C or DQN zip) acting for the other players on their own views
    (as examples/ppo_dream.py trains one: parameter sharing, one policy for every player)."""

    def __init__(self, path: str | Path, game: GameSpec, device: str = "cpu", deterministic: bool = True):
        from stable_baselines3 import A2C, DQN, PPO

        path = Path(path)
        if not path.is_file():
            raise ValueError(f"--policy {path}: no such file (an SB3 model saved with model.save(...), a .zip)")
        errors = []
        for algo in (PPO, A2C, DQN):
            try:
                self.model = algo.load(path, device=device)
                break
            except Exception as e:  # noqa: BLE001 - the next algorithm class may read it
                errors.append(f"{algo.__name__}: {type(e).__name__}: {e}")
        else:
            raise ValueError(f"{path} is not a PPO, A2C or DQN model: " + "; ".join(errors))
        shape = tuple(self.model.observation_space.shape)
        px = game.view_px
        if shape not in ((px, px, 3), (3, px, px)):
            raise ValueError(f"{path} observes {shape}; {game.name}'s players see ({px}, {px}, 3)")
        if getattr(self.model.action_space, "n", None) != game.num_actions:
            raise ValueError(f"{path} acts in {self.model.action_space}; {game.name} has {game.num_actions} actions")
        self.channels_first = shape[0] == 3 and shape[-1] != 3
        self.deterministic = deterministic

    def __call__(self, observations: dict[str, np.ndarray], agents: Sequence[str]) -> dict[str, int]:
        if not agents:
            return {}
        batch = np.stack([observations[a] for a in agents])
        if self.channels_first:
            batch = batch.transpose(0, 3, 1, 2)
        actions, _ = self.model.predict(batch, deterministic=self.deterministic)
        return {a: int(x) for a, x in zip(agents, np.asarray(actions).reshape(-1))}


# ---------------------------------------------------------------------------------- the recording
def frame_hash(frame: np.ndarray) -> bytes:
    """SHA-1 of a frame's shape and bytes: what a replay compares."""
    frame = np.ascontiguousarray(frame, np.uint8)
    return hashlib.sha1(repr(frame.shape).encode() + frame.tobytes()).digest()


@dataclass
class Recording:
    """What was played: per episode its seed and its start state (the real state both envs began from),
    per step the joint action, the episode it belongs to and the controlled player, and a hash of every
    dream frame (and real frame, side by side) so a replay can tell whether it drew the same frames.
    Saved as one .npz (no pickles): `meta` (JSON as uint8), `seeds` [E], `start/{e}/frame|cells|facing|
    alive`, `actions` int16 [T,N], `episode` int32 [T], `controlled` int16 [T], `dream_reset_hash` uint8
    [E,20], `dream_step_hash` [T,20] (and `real_...` likewise)."""

    meta: dict
    seeds: list[int] = field(default_factory=list)
    starts: list[StartState] = field(default_factory=list)
    actions: list[list[int]] = field(default_factory=list)
    episode: list[int] = field(default_factory=list)
    controlled: list[int] = field(default_factory=list)
    dream_reset_hash: list[bytes] = field(default_factory=list)
    dream_step_hash: list[bytes] = field(default_factory=list)
    real_reset_hash: list[bytes] = field(default_factory=list)
    real_step_hash: list[bytes] = field(default_factory=list)

    @property
    def num_steps(self) -> int:
        return len(self.actions)

    def episode_actions(self, e: int) -> np.ndarray:
        """int64 [T_e, N]: the joint actions of episode e, in order."""
        rows = [a for a, k in zip(self.actions, self.episode) if k == e]
        return np.array(rows, np.int64).reshape(len(rows), len(self.meta["agents"]))

    def episode_hashes(self, e: int, which: str = "dream") -> list[bytes]:
        """The reset frame's hash then each step's, of episode e (empty where not recorded)."""
        resets, steps = getattr(self, f"{which}_reset_hash"), getattr(self, f"{which}_step_hash")
        if not resets:
            return []
        return [resets[e]] + [h for h, k in zip(steps, self.episode) if k == e]

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        n = len(self.meta["agents"])
        arrays: dict[str, np.ndarray] = {
            "meta": np.frombuffer(json.dumps(self.meta).encode(), np.uint8),
            "seeds": np.array(self.seeds, np.int64),
            "actions": np.array(self.actions, np.int16).reshape(-1, n),
            "episode": np.array(self.episode, np.int32),
            "controlled": np.array(self.controlled, np.int16),
        }
        for name in ("dream_reset_hash", "dream_step_hash", "real_reset_hash", "real_step_hash"):
            arrays[name] = np.frombuffer(b"".join(getattr(self, name)), np.uint8).reshape(-1, 20)
        for e, s in enumerate(self.starts):
            arrays.update({f"start/{e}/frame": s.frame.astype(np.uint8), **s.players.arrays(f"start/{e}/")})
        with open(path, "wb") as f:  # np.savez_compressed(path) would append .npz to any other suffix
            np.savez_compressed(f, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Recording":
        path = recording_path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(z["meta"].tobytes())
                if meta.get("version") != RECORDING_VERSION:
                    raise ValueError(f"{path}: recording version {meta.get('version')!r}, expected {RECORDING_VERSION}")
                seeds = z["seeds"].tolist()
                starts = [StartState(z[f"start/{e}/frame"], PlayerStates.from_arrays(z, f"start/{e}/"))
                          for e in range(len(seeds))]
                hashes = {k: [bytes(r) for r in z[k]] for k in ("dream_reset_hash", "dream_step_hash",
                                                                "real_reset_hash", "real_step_hash")}
                return cls(meta, seeds, starts, z["actions"].astype(np.int64).tolist(), z["episode"].tolist(),
                           z["controlled"].tolist(), **hashes)
        except (OSError, KeyError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: not a play recording ({type(e).__name__}: {e})") from e


def recording_path(path: str | Path) -> Path:
    """The .npz of a recording: `--record out/s.mp4` writes out/s.mp4 and out/s.npz; either names it."""
    path = Path(path)
    return path if path.suffix == ".npz" else path.with_suffix(".npz")


class VideoWriter:
    """Pictures to an MP4 (imageio-ffmpeg, streamed) or a GIF (palette images kept until close)."""

    def __init__(self, path: str | Path, fps: float):
        self.path, self.fps = Path(path), float(fps)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.frames = 0
        self._size: tuple[int, ...] | None = None
        self._gif: list[Any] = []
        self._mp4 = None
        if self.path.suffix.lower() == ".mp4":
            try:
                import imageio.v2 as imageio
                import imageio_ffmpeg  # noqa: F401 - imageio's ffmpeg plugin needs it
            except ImportError as e:
                raise RuntimeError(f"--record {self.path} (MP4) needs imageio-ffmpeg: {PLAY_EXTRA}") from e
            self._mp4 = imageio.get_writer(self.path, fps=self.fps, codec="libx264", quality=8, macro_block_size=1,
                                           pixelformat="yuv420p", ffmpeg_log_level="error")
        elif self.path.suffix.lower() != ".gif":
            raise ValueError(f"--record {self.path}: write .mp4 or .gif")

    def add(self, picture: np.ndarray) -> None:
        """One picture; every picture takes the first one's size (padded or cut), as a video needs."""
        self.frames += 1
        if self._size is None:
            self._size = picture.shape[:2]
        elif picture.shape[:2] != self._size:
            h, w = self._size
            picture = _pad_to(picture[:h, :w], h, w)
        if self._mp4 is not None:
            h, w = picture.shape[:2]  # yuv420p needs even sides
            if h % 2 or w % 2:
                picture = np.pad(picture, ((0, h % 2), (0, w % 2), (0, 0)))
            self._mp4.append_data(picture)
        else:
            from PIL import Image

            self._gif.append(Image.fromarray(picture).quantize(colors=256, method=Image.Quantize.MEDIANCUT))

    def close(self) -> Path | None:
        if self._mp4 is not None:
            self._mp4.close()
            self._mp4 = None
        elif self._gif:
            self._gif[0].save(self.path, save_all=True, append_images=self._gif[1:],
                              duration=int(1000 / max(self.fps, 1)), loop=0)
            self._gif = []
        return self.path if self.frames else None


# ------------------------------------------------------------------------------- the loop's state
def inject_start(dream_env, state) -> None:
    """Make the dream's next reset start from `state` (a StartState): its start states become this one."""
    dream_env.dream.starts = StartStates({dream_env.substrate: [state]})


class PlaySession:
    """One played session: the dream (and, side by side, the real game), a controlled player, keys.

    `press(key)` / `release(key)` take key names (`KeyMap`); control keys act at once (Tab, R, P, `.`,
    Esc), an action key is the controlled player's action at the next step and repeats while held.
    `tick()` is the loop's step: nothing while paused (unless `.` was pressed) or after the episode
    ended, else one step of both envs with the controlled player's action and the others' (`others`:
    RandomOthers, NoopOthers or PolicyOthers, acting on the dream's views), the same joint action to
    both. Side by side, every reset starts the real game first and the dream from the real reset state
    (the real engine cannot be set to a state, the dream can), so both begin identically.

    `make_dream()` builds the dream env (again when a new start has another map size: coins draws its
    size per build); `real` is a RealParallelEnv or None. `recording`, when given, collects the actions,
    start states and frame hashes.
    """

    def __init__(self, make_dream: Callable[[], Any], real: Any = None, *, others: Callable | None = None,
                 controlled: int = 0, seed: int = 0, recording: Recording | None = None):
        self._make_dream = make_dream
        self.dream = make_dream()
        self.real = real
        self.game: GameSpec = self.dream.game
        self.agents: list[str] = list(self.dream.possible_agents)
        if real is not None and list(real.possible_agents) != self.agents:
            raise ValueError(f"the real env has agents {real.possible_agents}, the dream {self.agents}")
        if not 0 <= int(controlled) < len(self.agents):
            raise ValueError(f"controlled player must be in 0..{len(self.agents) - 1}, got {controlled!r}")
        self.keys = KeyMap.for_game(self.game)
        self.others = others or RandomOthers(self.game.num_actions, seed)
        self.controlled = int(controlled)
        self.base_seed = int(seed)
        self.recording = recording
        self.episode = -1
        self.paused = False
        self.quit = False
        self._step_once = self._just_reset = False
        self._pending: int | None = None
        self._held: list[str] = []
        self.agreed: list[int] = []  # side by side: players in the real state after each step
        self.dream_seconds: float | None = None  # moving averages of one step
        self.real_seconds: float | None = None
        self.changed = False  # a reset or a step since the last picture (the loop records then)
        self.reset()

    # --- keys
    @property
    def agent(self) -> str:
        return self.agents[self.controlled]

    def press(self, key: str) -> None:
        key = normalise_key(key)
        if key == "tab":
            self.controlled = (self.controlled + 1) % len(self.agents)
        elif key == "shift+tab":
            self.controlled = (self.controlled - 1) % len(self.agents)
        elif key == "r":
            self.reset()
            self._just_reset = True  # this tick shows the new start frame; stepping resumes at the next
        elif key == "p":
            self.paused = not self.paused
        elif key == ".":
            self._step_once = self.paused
        elif key == "escape":
            self.quit = True
        elif key in self.keys.actions:
            self._pending = self.keys.actions[key]
            if key in self._held:
                self._held.remove(key)
            self._held.append(key)

    def release(self, key: str) -> None:
        key = normalise_key(key)
        if key in self._held:
            self._held.remove(key)

    def next_action(self) -> int:
        """The controlled player's next action: the last action key pressed since the last step, else the
        key held down last, else NOOP."""
        if self._pending is not None:
            return self._pending
        return self.keys.actions[self._held[-1]] if self._held else self.keys.noop

    # --- the loop
    @property
    def ended(self) -> bool:
        return not self.dream.agents or (self.real is not None and not self.real.agents)

    def reset(self) -> None:
        """Start the next episode (seed = base seed + episode number) in both envs."""
        self.episode += 1
        seed = self.base_seed + self.episode
        if self.real is not None:
            self.real_obs, self.real_infos = self.real.reset(seed=seed)
            self.real_frame = self.real.state()
            state = StartState.from_infos(self.real_frame, self.real_infos, self.agents)
            self._reset_dream(seed, state)
        else:
            self._reset_dream(seed, None)
            state = StartState.from_infos(self.dream_frame, self.dream_infos, self.agents)
        self.step_count = 0
        self.dream_returns = dict.fromkeys(self.agents, 0.0)
        self.real_returns = dict.fromkeys(self.agents, 0.0)
        self._pending, self._step_once = None, False
        self.changed = True
        if self.recording is not None:
            rec = self.recording
            rec.seeds.append(seed)
            rec.starts.append(state)
            rec.dream_reset_hash.append(frame_hash(self.dream_frame))
            if self.real is not None:
                rec.real_reset_hash.append(frame_hash(self.real_frame))

    def _reset_dream(self, seed: int, state) -> None:
        if state is not None:
            last = self.dream.dream.last
            if last is not None and tuple(last.frames.shape[1:]) != state.frame.shape:
                self.dream.close()
                self.dream = self._make_dream()  # a new map size: a fresh simulator (the weights are cached)
            inject_start(self.dream, state)
        self.dream_obs, self.dream_infos = self.dream.reset(seed=seed)
        self.dream_frame = self.dream.state()

    def tick(self) -> bool:
        """One turn of the loop: step unless just reset, paused (a pending `.` steps once) or ended.
        Whether it stepped."""
        if self._just_reset:
            self._just_reset = False
            return False
        if self.quit or self.ended or (self.paused and not self._step_once):
            return False
        self.step(self.next_action())
        return True

    def step(self, action: int) -> None:
        """Both envs one step: `action` for the controlled player, the others' from `others`."""
        others = [a for a in self.agents if a != self.agent]
        actions = {**self.others(self.dream_obs, others), self.agent: int(action)}
        actions = {a: int(actions[a]) for a in self.agents}
        t = time.perf_counter()
        self.dream_obs, rewards, _, _, self.dream_infos = self.dream.step(actions)
        self.dream_frame = self.dream.state()
        self.dream_seconds = _average(self.dream_seconds, time.perf_counter() - t)
        for a, r in rewards.items():
            self.dream_returns[a] += r
        if self.real is not None:
            t = time.perf_counter()
            self.real_obs, rewards, _, _, self.real_infos = self.real.step(actions)
            self.real_frame = self.real.state()
            self.real_seconds = _average(self.real_seconds, time.perf_counter() - t)
            for a, r in rewards.items():
                self.real_returns[a] += r
        self.step_count += 1
        self.last_actions = actions
        if self.real is not None:
            self.agreed.append(self.agreement())
        self._pending, self._step_once = None, False
        self.changed = True
        if self.recording is not None:
            rec = self.recording
            rec.actions.append([actions[a] for a in self.agents])
            rec.episode.append(self.episode)
            rec.controlled.append(self.controlled)
            rec.dream_step_hash.append(frame_hash(self.dream_frame))
            if self.real is not None:
                rec.real_step_hash.append(frame_hash(self.real_frame))

    def agreement(self) -> int | None:
        """Side by side: how many players the dream has at the real cell, facing and alive flag."""
        if self.real is None:
            return None
        keys = PlayerStates.INFO_KEYS  # the dream's infos also hold its expected reward
        return sum(all(self.dream_infos[a][k] == self.real_infos[a][k] for k in keys) for a in self.agents)

    def close(self) -> None:
        self.dream.close()
        if self.real is not None:
            self.real.close()


def _average(old: float | None, new: float, keep: float = 0.8) -> float:
    return new if old is None else keep * old + (1 - keep) * new


def new_recording(session_meta: dict) -> Recording:
    return Recording({"version": RECORDING_VERSION, **session_meta})


# ------------------------------------------------------------------------------- the fixed frame rate
class FrameClock:
    """A fixed frame rate: `wait()` ends each tick at its deadline (fps 0: as fast as it goes) and says
    whether the tick's work ran past it; `rate` is the steps/s the loop reached over the last seconds."""

    def __init__(self, fps: float, window_s: float = 3.0, sleep: Callable[[float], None] = time.sleep,
                 now: Callable[[], float] = time.perf_counter):
        if fps < 0:
            raise ValueError(f"fps must be >= 0 (0: no limit), got {fps!r}")
        self.fps, self.window_s, self._sleep, self._now = float(fps), window_s, sleep, now
        self.period = 1.0 / fps if fps else 0.0
        self._deadline = now() + self.period
        self._steps: list[float] = []
        self.behind = False  # the last step's tick took longer than the period

    def stepped(self) -> None:
        self._steps.append(self._now())
        self._forget()

    def _forget(self) -> None:
        t = self._now()
        while self._steps and self._steps[0] < t - self.window_s:
            self._steps.pop(0)

    @property
    def rate(self) -> float | None:
        if len(self._steps) < 2:
            return None
        span = self._steps[-1] - self._steps[0]
        return (len(self._steps) - 1) / span if span > 0 else None

    def wait(self, stepped: bool) -> None:
        self._forget()  # a pause empties the window: no stale rate on screen
        now = self._now()
        late = now > self._deadline
        if stepped and self.period:
            self.behind = late
        if not late:
            self._sleep(self._deadline - now)
            self._deadline += self.period
        else:  # no catching up after a slow step: the next tick gets a whole period
            self._deadline = now + self.period


# ------------------------------------------------------------------------------- what the window shows
BOX = (255, 230, 0)  # the controlled player's cell
TEXT, DIM, WARN, BG = (235, 235, 235), (150, 150, 150), (255, 110, 90), (24, 24, 28)
LINE, PAD = 16, 6


def fit_scale(frame_shape: tuple[int, ...], view_px: int, panels: int, max_w: int = 1500, max_h: int = 820) -> int:
    """The largest integer upscale (1..4) that fits `panels` frames and a view into max_w x max_h."""
    h, w = frame_shape[:2]
    for s in (4, 3, 2):
        if panels * w * s + view_px * min(s, 2) + PAD * (panels + 2) <= max_w and h * s + 6 * LINE <= max_h:
            return s
    return 1


def _box(img: np.ndarray, cell: Sequence[int], scale: int, colour=BOX) -> None:
    r, c = int(cell[0]) * CELL * scale, int(cell[1]) * CELL * scale
    size, t = CELL * scale, max(1, scale // 2)
    h, w = img.shape[:2]
    if not (0 <= r < h and 0 <= c < w):
        return
    img[r:r + t, c:c + size] = colour
    img[max(r + size - t, 0):r + size, c:c + size] = colour
    img[r:r + size, c:c + t] = colour
    img[r:r + size, max(c + size - t, 0):c + size] = colour


def _upscale(img: np.ndarray, s: int) -> np.ndarray:
    return img if s == 1 else np.repeat(np.repeat(img, s, axis=0), s, axis=1)


def _wrap(parts: Iterable[str], width_px: int, font) -> list[str]:
    lines, line = [], ""
    for part in parts:
        trial = f"{line}   {part}" if line else part
        if line and font.getlength(trial) > width_px:
            lines.append(line)
            line = part
        else:
            line = trial
    return lines + ([line] if line else [])


def status_lines(session: PlaySession, clock: FrameClock | None = None) -> list[tuple[list[str], tuple]]:
    """The status text as lines of parts (wrapped between parts): step, episode, the controlled player,
    the speeds and notes (paused, ended, cannot keep up), then each player's return and alive flag."""
    s = session
    head = [s.game.name, f"step {s.step_count}/{s.dream.max_cycles}",
            f"episode {s.episode} (seed {s.base_seed + s.episode})", f"you: {s.agent} (Tab)"]
    if s.dream_seconds:
        head.append(f"model {1 / s.dream_seconds:.1f} steps/s")
    if s.real is not None and s.real_seconds:
        head.append(f"real {1 / s.real_seconds:.0f} steps/s")
    if clock is not None and clock.fps:
        rate = clock.rate
        head.append(f"loop {rate:.1f} of {clock.fps:g} steps/s" if rate else f"loop - of {clock.fps:g} steps/s")
    lines = [(head, TEXT)]
    notes = []
    if s.paused:
        notes.append("PAUSED: P resumes, . steps one frame")
    if s.ended:
        notes.append("episode over: R starts the next")
    if clock is not None and clock.fps and clock.behind and not s.paused:
        notes.append(f"the model cannot keep up with {clock.fps:g} steps/s here")
    lines.append((notes, WARN))  # always a line, so the window keeps its size
    players = []
    for a in s.agents:
        alive = "alive" if s.dream_infos[a]["alive"] else "dead"
        ret = f"{s.dream_returns[a]:+.1f}"
        if s.real is not None:
            ret = f"{ret} (real {s.real_returns[a]:+.1f})"
            alive = f"{alive}/{'alive' if s.real_infos[a]['alive'] else 'dead'}"
        players.append(f"{a}{'*' if a == s.agent else ''} {ret} {alive}")
    agree = s.agreement()
    if agree is not None:
        players.append(f"dream = real: {agree}/{len(s.agents)} players")
    lines.append((players, TEXT))
    return lines


@functools.lru_cache(maxsize=1)
def _font():
    from PIL import ImageFont

    return ImageFont.load_default(size=13)


def picture(session: PlaySession, scale: int | None = None, clock: FrameClock | None = None,
            legend: bool = True) -> np.ndarray:
    """What the window shows, uint8 [H, W, 3]: (real |) dream global frame, upscaled, with the controlled
    player's cell boxed, its own view (dream, and real below it side by side) beside them, then the
    status and the keys. Text is drawn with PIL, so a recording or screenshot is exactly the window."""
    from PIL import Image, ImageDraw

    s = session
    panels = [("real Melting Pot", s.real_frame, s.real_infos)] if s.real is not None else []
    panels.append(("dream (world model)", s.dream_frame, s.dream_infos))
    scale = scale or fit_scale(s.dream_frame.shape, s.game.view_px, len(panels))
    vs = min(scale, 2)
    views = [(f"{s.agent}'s view (dream)", s.dream_obs[s.agent])]
    if s.real is not None:
        views.append((f"{s.agent}'s view (real)", s.real_obs[s.agent]))
    font = _font()
    images = []
    for _, frame, infos in panels:
        img = _upscale(np.asarray(frame, np.uint8), scale).copy()
        if infos[s.agent]["alive"]:
            _box(img, infos[s.agent]["cell"], scale)
        images.append(img)
    view_imgs = [_upscale(np.asarray(v, np.uint8), vs) for _, v in views]
    top = LINE + 2
    frames_h = max(i.shape[0] for i in images)
    views_h = sum(v.shape[0] + LINE + 2 for v in view_imgs)
    width = sum(i.shape[1] + PAD for i in images) + max(v.shape[1] for v in view_imgs) + PAD
    width = max(width, 640)
    legend_parts = [f"{k} {n}" for k, n in s.keys.legend] + ["Tab player", "R reset", "P pause", ". step", "Esc quit"]
    text = status_lines(s, clock)
    wrapped = [(line, colour) for parts, colour in text for line in (_wrap(parts, width - 2 * PAD, font) or [""])]
    keys = _wrap(legend_parts, width - 2 * PAD, font) if legend else []
    height = top + max(frames_h, views_h) + PAD + LINE * (len(wrapped) + len(keys)) + PAD
    canvas = np.zeros((height, width, 3), np.uint8)
    canvas[:] = BG
    x = PAD // 2
    labels = []
    for (label, _, _), img in zip(panels, images):
        canvas[top:top + img.shape[0], x:x + img.shape[1]] = img
        labels.append((x, 1, label, DIM))
        x += img.shape[1] + PAD
    y = top
    for (label, _), v in zip(views, view_imgs):
        labels.append((x, y - LINE - 1, label, DIM))
        canvas[y:y + v.shape[0], x:x + v.shape[1]] = v
        y += v.shape[0] + LINE + 2
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    for lx, ly, label, colour in labels:
        draw.text((lx, ly), label, fill=colour, font=font)
    y = top + max(frames_h, views_h) + PAD
    for line, colour in wrapped:
        draw.text((PAD, y), line, fill=colour, font=font)
        y += LINE
    for line in keys:
        draw.text((PAD, y), line, fill=DIM, font=font)
        y += LINE
    return np.asarray(image)


# ------------------------------------------------------------------------------- the pygame loop
def import_pygame():
    """pygame, or a RuntimeError naming the extra that installs it."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    try:
        import pygame
    except ImportError as e:
        raise RuntimeError(f"actionparty play --interactive needs pygame: {PLAY_EXTRA}") from e
    return pygame


def _event_key(pg, event) -> str:
    name = pg.key.name(event.key)
    shifted = bool(getattr(event, "mod", 0) & pg.KMOD_SHIFT)
    if shifted and (name in DIGITS or name == "tab"):
        name = f"shift+{name}"
    return normalise_key(name)


def _post_keys(pg, keys: Sequence[str]) -> None:
    """A script's tick: each key pressed and released, as the window's own events."""
    for key in keys:
        mod = pg.KMOD_LSHIFT if key.startswith("shift+") else 0
        code = pg.key.key_code(key.removeprefix("shift+"))
        pg.event.post(pg.event.Event(pg.KEYDOWN, key=code, mod=mod))
        pg.event.post(pg.event.Event(pg.KEYUP, key=code, mod=mod))


def _pad_to(img: np.ndarray, h: int, w: int) -> np.ndarray:
    if img.shape[:2] == (h, w):
        return img
    out = np.empty((h, w, 3), np.uint8)
    out[:] = BG
    out[:img.shape[0], :img.shape[1]] = img
    return out


def run_window(session: PlaySession, *, fps: float = 8.0, scale: int | None = None,
               script: Sequence[Sequence[str]] | None = None, video: VideoWriter | None = None,
               screenshot: str | Path | None = None, title: str | None = None,
               on_tick: Callable[[PlaySession, bool], None] | None = None) -> dict:
    """The pygame loop: events -> `session.press/release`, `session.tick()`, the picture, a fixed frame rate
    (`fps`, 0: no limit). With `script` (ticks of key names, `parse_script`) the keys come from it, posted
    as key events into the same event queue, and the loop ends after its last tick; that is the headless
    path (SDL_VIDEODRIVER=dummy). `video` gets a picture after every reset or step; `screenshot` saves the
    last picture (PNG). Returns {"ticks", "steps", "seconds", "rate"}."""
    pg = import_pygame()
    if script is not None and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # a scripted run needs no screen
    pg.display.init()
    pg.font.init()
    try:
        try:
            first = picture(session, scale)
            screen = pg.display.set_mode((first.shape[1], first.shape[0]))
        except pg.error as e:
            raise RuntimeError(f"no window could open ({e}); on a machine without a display run a scripted "
                               "session headless: SDL_VIDEODRIVER=dummy actionparty play GAME --keys \"w w e ...\"") from e
        pg.display.set_caption(title or f"actionparty play {session.game.name}")
        pg.key.set_repeat()  # held keys are tracked by KEYDOWN/KEYUP, not auto-repeat
        clock = FrameClock(fps)
        ticks = iter(script) if script is not None else None
        steps = n = 0
        start = time.perf_counter()
        img = first
        pg.surfarray.blit_array(screen, first.transpose(1, 0, 2))
        pg.display.flip()
        if video is not None:
            video.add(first)  # the start frame
        session.changed = False
        try:
            while not session.quit:
                if ticks is not None:
                    keys = next(ticks, None)
                    if keys is None:
                        break
                    _post_keys(pg, keys)
                for event in pg.event.get():
                    if event.type == pg.QUIT:
                        session.quit = True
                    elif event.type == pg.KEYDOWN:
                        session.press(_event_key(pg, event))
                    elif event.type == pg.KEYUP:
                        session.release(_event_key(pg, event))
                if session.quit:
                    break
                stepped = session.tick()
                if stepped:
                    steps += 1
                    clock.stepped()
                if session.changed or not stepped:  # a new frame, or the status of a paused or ended game
                    img = picture(session, scale, clock)
                    size = (max(img.shape[1], screen.get_width()), max(img.shape[0], screen.get_height()))
                    if size != screen.get_size():  # only grows (a status line wrapped), so it never flickers
                        screen = pg.display.set_mode(size)
                    img = _pad_to(img, size[1], size[0])
                    pg.surfarray.blit_array(screen, img.transpose(1, 0, 2))
                    pg.display.flip()
                    if video is not None and session.changed:
                        video.add(img)
                    session.changed = False
                if on_tick is not None:
                    on_tick(session, stepped)
                n += 1
                clock.wait(stepped)
        except KeyboardInterrupt:  # Ctrl+C in the terminal ends the session like Esc (the recording is kept)
            pass
        seconds = time.perf_counter() - start
        if screenshot is not None:
            Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
            pg.image.save(screen, str(screenshot))
        return {"ticks": n, "steps": steps, "seconds": seconds, "rate": steps / seconds if seconds else None}
    finally:
        pg.display.quit()


# ------------------------------------------------------------------------------- replay
@dataclass
class ReplayResult:
    frames: list[np.ndarray]  # every global frame, each episode's reset frame then its steps
    actions: np.ndarray  # int64 [T, N]: what was fed to the env
    matched: int | None  # frames whose hash equals the recording's (None: nothing recorded to compare)
    compared: int


def replay(recording: Recording, *, real: bool = False, make_dream: Callable[[], Any] | None = None,
           on_frame: Callable[[np.ndarray], None] | None = None) -> ReplayResult:
    """Play a recording's actions again: in the dream (each episode from its recorded start state and
    seed, so on one device the frames are the recorded ones) or, `real=True`, in the real Melting Pot
    (each episode reset with its seed; the engine does not replay a start from its seed, so only the
    actions are the same). `make_dream()` builds the dream (default: the recording's checkpoint on CPU)."""
    meta = recording.meta
    n = len(meta["agents"])
    if real:
        from actionparty_env.real import RealParallelEnv

        env = RealParallelEnv(meta["substrate"], num_players=n, max_cycles=max(recording.num_steps, 1) + 1)
    else:
        make_dream = make_dream or (lambda: _dream_from_meta(meta, device="cpu"))
        env = None
    frames, fed, matched, compared = [], [], 0, 0
    which = "real" if real else "dream"
    for e, seed in enumerate(recording.seeds):
        if not real:
            state = recording.starts[e]
            if env is None or tuple(env.dream.last.frames.shape[1:]) != state.frame.shape:
                if env is not None:
                    env.close()
                env = make_dream()
            inject_start(env, state)
        env.reset(seed=int(seed))
        episode_frames = [env.state()]
        for row in recording.episode_actions(e):
            actions = {a: int(x) for a, x in zip(env.possible_agents, row)}
            env.step(actions)
            fed.append(list(row))
            episode_frames.append(env.state())
        expected = recording.episode_hashes(e, which)
        if expected:
            compared += len(expected)
            matched += sum(frame_hash(f) == h for f, h in zip(episode_frames, expected))
        for f in episode_frames:
            if on_frame is not None:
                on_frame(f)
            frames.append(f)
    if env is not None:
        env.close()
    return ReplayResult(frames, np.array(fed, np.int64).reshape(-1, n), matched if compared else None, compared)


def _dream_from_meta(meta: dict, device: str = "cpu", checkpoint: str | None = None):
    from actionparty_env.env import parallel_env

    return parallel_env(meta["substrate"], checkpoint=checkpoint or meta.get("checkpoint"),
                        num_players=len(meta["agents"]), device=device, sampling_steps=meta.get("sampling_steps"),
                        temperature=meta.get("temperature"), max_cycles=max(int(meta.get("max_cycles", 1000)), 1),
                        decoding=meta.get("decoding"), start="real")  # replay() sets each start state


# ------------------------------------------------------------------------------- the command line
def add_play_arguments(p, output_file: Callable[..., Path] | None = None) -> None:
    """The options of `actionparty play` that this module runs (cli.play_main adds them); `output_file`
    (cli.output_file) checks the output paths before any work."""
    def out(*suffixes):
        return functools.partial(output_file, suffixes=suffixes) if output_file is not None else str

    g = p.add_argument_group("playing (a person controls a player; needs pip install 'actionparty-env[play]')")
    g.add_argument("--interactive", action="store_true", help="open a window and play (keys on screen)")
    g.add_argument("--side-by-side", action="store_true",
                   help="the real Melting Pot beside the dream, the same actions from the same real start")
    g.add_argument("--record", default=None, metavar="PATH", type=out(".mp4", ".gif"),
                   help="write the session as MP4 or GIF, plus PATH's .npz (actions, starts) for `actionparty replay`")
    g.add_argument("--policy", default=None, metavar="ZIP", help="an SB3 model (PPO/A2C/DQN .zip) for the other players")
    g.add_argument("--others", choices=("random", "noop"), default="random",
                   help="what the other players do without --policy")
    g.add_argument("--player", type=int, default=0, help="the player you control first (Tab switches)")
    g.add_argument("--fps", type=float, default=8.0, help="steps per second (0: as fast as the model goes)")
    g.add_argument("--max-cycles", type=int, default=1000, help="steps per episode when playing")
    g.add_argument("--window-scale", type=int, default=None, help="upscale of the frames (default: fit the screen)")
    g.add_argument("--keys", default=None, metavar="SCRIPT",
                   help='a scripted key sequence instead of a person, e.g. "w*3 e tab,w p . ." (runs headless '
                        "under SDL_VIDEODRIVER=dummy; the loop ends after it)")
    g.add_argument("--screenshot", default=None, metavar="PNG", type=out(".png", ".jpg", ".jpeg", ".bmp", ".tga"),
                   help="save the last picture of the window")


def wants_play(args, parser) -> bool:
    """Whether `actionparty play` plays (a window or a script) rather than writing a random rollout's GIF."""
    playing = bool(args.interactive or args.keys is not None)
    if not playing:
        given = [flag for flag, value in (("--side-by-side", args.side_by_side), ("--record", args.record),
                                          ("--policy", args.policy), ("--screenshot", args.screenshot)) if value]
        if given:
            parser.error(f"{', '.join(given)} need --interactive (or a scripted --keys sequence)")
    return playing


def play(args, parser) -> int:
    """`actionparty play GAME --interactive ...` (cli.play_main hands the parsed args here)."""
    from actionparty_env.env import parallel_env
    from actionparty_env.games import get_game

    if args.max_cycles < 1:
        parser.error("--max-cycles must be >= 1")
    if args.fps < 0:
        parser.error("--fps must be >= 0")
    try:
        game = get_game(args.game)
        script = parse_script(args.keys) if args.keys is not None else None
        import_pygame()
    except (ValueError, RuntimeError) as e:
        parser.error(str(e))
    kwargs = dict(checkpoint=args.checkpoint, num_players=args.num_players, device=args.device,
                  sampling_steps=args.sampling_steps, temperature=args.temperature, max_cycles=args.max_cycles,
                  start="real" if args.side_by_side else args.start)  # side by side: the real reset state
    real = None
    try:
        def make_dream():
            return parallel_env(args.game, **kwargs)

        if args.side_by_side:
            from actionparty_env.real import RealParallelEnv

            real = RealParallelEnv(args.game, num_players=args.num_players, max_cycles=args.max_cycles)
        if args.policy:
            others = PolicyOthers(args.policy, game)
        elif args.others == "noop":
            others = NoopOthers(KeyMap.for_game(game).noop)
        else:
            others = RandomOthers(game.num_actions, args.seed)
        recording = None
        if args.record:
            recording = new_recording({
                "substrate": args.game, "agents": [f"player_{i}" for i in range(args.num_players or game.num_players)],
                "action_names": list(game.action_names), "checkpoint": str(args.checkpoint) if args.checkpoint else None,
                "device": args.device, "sampling_steps": args.sampling_steps, "temperature": args.temperature,
                "max_cycles": args.max_cycles, "side_by_side": bool(args.side_by_side), "fps": args.fps,
                "policy": args.policy, "seed": args.seed})
        session = PlaySession(make_dream, real, others=others, controlled=args.player, seed=args.seed,
                              recording=recording)
    except ValueError as e:
        if real is not None:
            real.close()
        parser.error(str(e))
    print(f"playing {args.game} on {session.dream.dream.device} from {session.dream.dream.folder}"
          + (" beside the real Melting Pot" if real is not None else ""))
    legend = ", ".join(f"{k} {n}" for k, n in session.keys.legend)
    print(f"keys: {legend}; Tab player, R reset, P pause, . step, Esc quit")
    video = VideoWriter(args.record, args.fps or 8.0) if args.record else None
    try:
        result = run_window(session, fps=args.fps, scale=args.window_scale, script=script, video=video,
                            screenshot=args.screenshot)
    finally:
        session.close()
        written = video.close() if video is not None else None
    rate = f"{result['rate']:.2f}" if result["rate"] else "-"
    print(f"{result['steps']} steps in {result['seconds']:.1f} s ({rate} steps/s, asked {args.fps:g}); "
          f"last episode: step {session.step_count}")
    for a in session.agents:
        i = session.dream_infos[a]
        ret = f"{session.dream_returns[a]:+.2f}" + (f" (real {session.real_returns[a]:+.2f})" if real else "")
        print(f"  {a}: return {ret}, cell {i['cell']}, facing {'NESW'[i['facing']]}, alive {i['alive']}")
    if real is not None and session.agreed:
        full = sum(k == len(session.agents) for k in session.agreed)
        print(f"dream = real (every player's cell, facing and alive flag) after {full} of {len(session.agreed)} steps")
    if recording is not None:
        path = recording.save(recording_path(args.record))
        print(f"recorded {recording.num_steps} steps: {written} and {path} (actionparty replay {path})")
    if args.screenshot:
        print(f"wrote {args.screenshot}")
    return 0


def replay_main(argv: list[str]) -> int:
    """`actionparty replay PATH [--real] [--gif OUT]`."""
    import argparse

    from actionparty_env.render import save_gif

    p = argparse.ArgumentParser(prog="actionparty replay", description="Replay a recording of `actionparty play "
                                "--record` in the dream (the frames come out as recorded) or, with --real, in the "
                                "real Melting Pot (the same actions), and write the frames as a GIF.")
    p.add_argument("path", help="the recording: PATH.npz (or the .mp4/.gif beside it)")
    p.add_argument("--real", action="store_true", help="replay in the real Melting Pot instead of the dream")
    p.add_argument("--gif", default=None, help="where to write the frames (default: PATH.replay[_real].gif)")
    p.add_argument("--scale", type=int, default=2, help="GIF upscale factor")
    p.add_argument("--checkpoint", default=None, help="dream checkpoint (default: the recording's)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (the recording's frames are one device's)")
    args = p.parse_args(argv)
    try:
        rec = Recording.load(args.path)
    except (ValueError, OSError) as e:
        p.error(str(e))
    gif = Path(args.gif) if args.gif else recording_path(args.path).with_suffix(".replay_real.gif" if args.real
                                                                                 else ".replay.gif")
    try:
        result = replay(rec, real=args.real,
                        make_dream=lambda: _dream_from_meta(rec.meta, args.device, args.checkpoint))
    except ValueError as e:
        p.error(str(e))
    where = "the real Melting Pot" if args.real else "the dream"
    print(f"replayed {len(result.actions)} steps of {len(rec.seeds)} episode(s) of {rec.meta['substrate']} in {where}")
    if result.matched is None:
        print("the recording holds no frames of this game to compare with (it was not played side by side)")
    else:
        print(f"{result.matched} of {result.compared} frames identical to the recording"
              + (" (the real engine does not reproduce a start from its seed: its spawn order varies)"
                 if args.real and result.matched < result.compared else ""))
    path = save_gif(result.frames, gif, fps=rec.meta.get("fps") or 8.0, scale=args.scale)
    print(f"wrote {len(result.frames)} frames to {path}")
    return 0
