"""The dream: Melting Pot as the world model draws it, behind PettingZoo's ParallelEnv.

`reset(seed)` starts from a real start state (bundled with the checkpoint, or a fresh real reset);
from then on every frame and player state comes from the simulator's own previous output (closed
loop). Each `step` is one simulator call for all players; each player's observation is cropped from
the generated frame at its predicted cell and facing (views.py), so the spaces are the real env's.

`DreamConfig` is what a dream is made of (substrate, checkpoint, players, device, decoding, ...),
checked once; every dream constructor (`DreamWorlds`, `DreamParallelEnv`, `parallel_env`,
`actionparty_env.vector.DreamVecEnv`) takes its fields as keyword arguments. `DreamWorlds` is the
part shared with the batched `DreamVecEnv`: B worlds of one substrate, their simulator (loaded
lazily), start states and the view crop.
"""
from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np
import torch

from actionparty_env.games import GameSpec, get_game
from actionparty_env.grid import PlayerStates
from actionparty_env.players import PlayersEnv, check_num_players, check_positive_int
from actionparty_env.simulator import (DECODINGS, START_STATES_FILE, Simulator, StartState, StartStates, StepResult,
                                       reset_simulator)
from actionparty_env.views import VIEW_TABLES_FILE, ViewTable, egocentric_views

# A simulator, or a factory (num_players, num_worlds, device) -> simulator, e.g.
# functools.partial(CopyLastFrameSimulator, game). None: the world model of the checkpoint.
SimulatorArg = Union[Simulator, Callable[[int, int, torch.device], Simulator], None]


def available_devices() -> list[str]:
    """The devices this torch can run on here: 'cpu', then 'cuda:0'.. and 'mps' where present."""
    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out


def _torch_build() -> str:
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a build without CUDA"
    return f"torch {torch.__version__} is built for CUDA {torch.version.cuda} but sees no GPU"


def resolve_device(device: str | torch.device) -> torch.device:
    """`device` as a torch.device this process can use ('auto': CUDA if present, else the CPU), or a
    ValueError naming what torch has: an unknown name, CUDA without a GPU, a GPU index out of range."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, (str, torch.device)):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or a torch.device, got {device!r}")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as e:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or a torch.device, got {device!r}; "
                         f"this torch has: {', '.join(available_devices())}") from e
    have = available_devices()
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: {_torch_build()}; this torch has: {', '.join(have)} "
                             f"(pass device='cpu' or 'auto')")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: there are {torch.cuda.device_count()} GPUs; this torch has: "
                             f"{', '.join(have)}")
    elif dev.type == "mps":
        if "mps" not in have:
            raise ValueError(f"device {device!r}: MPS is not available; this torch has: {', '.join(have)}")
    elif dev.type != "cpu":
        raise ValueError(f"device {device!r}: the dream runs on cpu, cuda or mps; this torch has: {', '.join(have)}")
    return dev


@functools.lru_cache(maxsize=4)
def _load_model(folder: str, device: str):
    """One copy of a checkpoint's weights per process and device, shared by every env using it."""
    from actionparty_env.model.checkpoint import load_world_model

    return load_world_model(folder, device)


_positive_int = check_positive_int  # the name real_vector.py imports

# The episode clock's draws come from the reset seed and this number, a stream apart from the simulator's.
EPISODE_END_STREAM = 0xE9D
STARTS = ("bundled", "real")  # where reset() takes its start state: the checkpoint's, or a fresh Melting Pot reset


@dataclass(frozen=True)
class DreamConfig:
    """What a dream is made of, checked once: every dream constructor takes these fields as keyword
    arguments and builds one. A bad value is a ValueError naming the argument; nothing is read from the
    checkpoint here (`DreamWorlds` checks its files). After construction the fields hold the resolved
    values: `num_players` an int, `device` a torch.device, `checkpoint` a Path, `game` the GameSpec.
    """

    substrate: str
    checkpoint: str | os.PathLike | None = None  # a folder, or a bundled one by name ("default", "small"); None: "default"
    num_players: int | None = None               # a count the substrate takes; None: its default
    device: str | torch.device = "auto"          # "auto": CUDA if present, else the CPU
    sampling_steps: int | None = None            # 1..16 unmasking steps per frame; None: the simulator's default
    temperature: float | None = None             # >= 0; None: the simulator's default (0, the most likely code)
    start: str = "bundled"                       # one of STARTS
    simulator: SimulatorArg = None               # None: the checkpoint's world model
    consistent_sprites: bool = True              # draw with the sprite constraint where the checkpoint has one
    decoding: str | None = None                  # one of DECODINGS; None: the checkpoint's default
    cuda_graph: bool = True                      # on a GPU, replay the step as one CUDA graph (model/step_graph.py)
    compile: bool = False                        # the layers through torch.compile (WorldModel.compiled_layers)
    game: GameSpec = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Frozen for its users; here the resolved values replace the given ones, past the frozen __setattr__.
        resolved = functools.partial(object.__setattr__, self)
        resolved("game", get_game(self.substrate))  # ValueError naming close matches
        resolved("num_players", check_num_players(self.game, self.num_players))  # the real env's contract
        if self.checkpoint is not None and not isinstance(self.checkpoint, (str, os.PathLike)):
            raise ValueError(f"checkpoint must be a folder (str or Path), a bundled name ('default', 'small') "
                             f"or None, got {self.checkpoint!r}")
        from actionparty_env.model.checkpoint import resolve_checkpoint

        resolved("checkpoint", resolve_checkpoint(self.checkpoint))
        resolved("device", resolve_device(self.device))
        if self.sampling_steps is not None:
            check_positive_int("sampling_steps", self.sampling_steps, 16)
        if self.temperature is not None and not (isinstance(self.temperature, (int, float)) and self.temperature >= 0):
            raise ValueError(f"temperature must be a float >= 0, got {self.temperature!r}")
        if self.start not in STARTS:
            raise ValueError(f"start must be 'bundled' (the checkpoint's start states) or 'real' (a fresh "
                             f"Melting Pot reset), got {self.start!r}")
        if self.simulator is not None and not callable(self.simulator) and not isinstance(self.simulator, Simulator):
            raise ValueError(f"simulator must be a Simulator, a factory (num_players, num_worlds, device) -> "
                             f"Simulator, or None (the checkpoint's world model), got {self.simulator!r}")
        for switch in ("consistent_sprites", "cuda_graph", "compile"):
            value = getattr(self, switch)
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{switch} must be True or False, got {value!r}")
            resolved(switch, bool(value))
        if self.decoding is not None and self.decoding not in DECODINGS:
            raise ValueError(f"decoding must be one of {', '.join(DECODINGS)} (or None: the checkpoint's default), "
                             f"got {self.decoding!r}")

    def simulator_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of `DreamSimulator` this config sets (the ones left None keep its defaults)."""
        given = {"sampling_steps": self.sampling_steps, "temperature": self.temperature, "decoding": self.decoding}
        return {**{k: v for k, v in given.items() if v is not None}, "consistent_sprites": self.consistent_sprites,
                "cuda_graph": self.cuda_graph, "compile": self.compile}


class DreamWorlds:
    """B dream worlds of one substrate with N players each, stepped by one simulator call.

    Holds the simulator (built on first use, so a pickled copy never carries weights), the start
    states and the view crop. Tensors stay on `device`; callers convert once for all players.
    `options` are `DreamConfig`'s fields (checkpoint, num_players, device, ...).
    """

    def __init__(self, substrate: str, *, num_worlds: int = 1, **options: Any) -> None:
        self.config = DreamConfig(substrate, **options)
        # The config's values under the names the envs, play.py and the CLI read.
        self.game, self.substrate = self.config.game, substrate
        self.num_players, self.device = self.config.num_players, self.config.device
        self.folder, self.start = self.config.checkpoint, self.config.start
        self.num_worlds = check_positive_int("num_worlds", num_worlds)
        # Everything the first reset needs is checked here, so a bad checkpoint fails in the constructor.
        self.sprite_constraint = False  # whether frames are drawn with the sprite constraint (below)
        if self.config.simulator is None:
            from actionparty_env.model.checkpoint import check_checkpoint

            # config.json, the SHA-256 of every file it lists, every shard's tensor names and shapes:
            # a CheckpointError (a ValueError) names the file at fault.
            config = check_checkpoint(self.folder)
            known = config["games"]
            if substrate not in known:
                raise ValueError(f"the checkpoint {self.folder} does not know the substrate {substrate!r}; "
                                 f"it knows: {', '.join(known)}")
            slots = int(config["model"].get("max_players", self.num_players))
            if self.num_players > slots:
                raise ValueError(f"the checkpoint {self.folder} models at most {slots} players; "
                                 f"num_players={self.num_players}")
            if self.config.consistent_sprites:
                self.sprite_constraint = self._check_sprites()
        self.starts = StartStates.load(self.folder) if self.start == "bundled" else None
        if self.starts is not None:
            if substrate not in self.starts.states:
                raise ValueError(f"{self.folder / START_STATES_FILE} has no start states for {substrate!r}; "
                                 f"it has: {', '.join(self.starts.substrates())}")
            most = max(s.num_players for s in self.starts.states[substrate])
            if most < self.num_players:
                raise ValueError(f"{self.folder / START_STATES_FILE}: the start states of {substrate} have at "
                                 f"most {most} players; num_players={self.num_players} needs start='real'")
        self.view_table = self._load_view_table()
        self._sim: Simulator | None = None
        self.last: StepResult | None = None
        # Melting Pot's clock of each world's episode (games.EpisodeEnd): the step it ends at, drawn at the
        # world's reset from its seed, and the steps since. The host counts them: no step waits for it.
        self.episode_end = self.game.episode_end
        self.ends_at = np.full(self.num_worlds, np.iinfo(np.int64).max, np.int64)
        self.steps = np.zeros(self.num_worlds, np.int64)

    def _check_sprites(self) -> bool:
        """Whether the checkpoint has a sprite table for this substrate; if not, a CheckpointWarning
        says plainly that the frames are drawn without the sprite constraint, and why."""
        from actionparty_env.model.checkpoint import CheckpointWarning
        from actionparty_env.model.sprites import SPRITES_FILE

        path = self.folder / SPRITES_FILE
        if path.is_file():
            with np.load(path, allow_pickle=False) as npz:
                if f"{self.substrate}/codes" in npz.files:
                    return True
            why = f"{path} has no sprite table for {self.substrate}"
        else:
            why = f"{path} is missing"
        warnings.warn(f"{why}, so the sprite constraint is off: the dream's frames are drawn freely (players may "
                      f"be drawn where none stands, twice or not at all; the README's action-following scores "
                      f"need it). Build it with `python -m training.artefacts sprites --checkpoint {self.folder} "
                      f"--data LMDB`, or pass consistent_sprites=False to draw freely on purpose.",
                      CheckpointWarning, stacklevel=4)
        return False

    def _load_view_table(self) -> ViewTable | None:
        path = self.folder / VIEW_TABLES_FILE
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as npz:
            prefix = f"{self.substrate}/"
            return ViewTable.load(npz, prefix) if f"{prefix}keys" in npz.files else None

    @property
    def sim(self) -> Simulator:
        if self._sim is None:
            arg, n, b = self.config.simulator, self.num_players, self.num_worlds
            if arg is None:
                from actionparty_env.model.sampler import DreamSimulator

                model = _load_model(str(self.folder.resolve()), str(self.device))
                self._sim = DreamSimulator(model, self.game, n, num_worlds=b, device=self.device,
                                           **self.config.simulator_kwargs())
            elif callable(arg) and not isinstance(arg, Simulator):
                self._sim = arg(n, b, self.device)
            else:
                self._sim = arg
            if (self._sim.num_worlds, self._sim.num_players) != (b, n):
                raise ValueError(f"the simulator holds {self._sim.num_worlds} worlds of {self._sim.num_players} "
                                 f"players; this env needs {b} of {n}")
        return self._sim

    def start_state(self, seed: int, shape: tuple[int, ...] | None = None) -> StartState:
        if self.starts is None:
            return StartStates.from_real(self.substrate, seed, self.num_players)
        return self.starts.pick(self.substrate, seed, self.num_players, shape=shape)

    def reset(self, seeds: list[int], worlds: torch.Tensor | None = None, reseed: int | None = None) -> torch.Tensor:
        """Start the worlds marked in `worlds` ([B] bool, None = all) from start states picked by
        `seeds` (one per marked world); `reseed` reseeds the simulator. Returns all views."""
        b = self.num_worlds
        marked = [True] * b if worlds is None else worlds.tolist()
        if self.last is None and not all(marked):
            raise RuntimeError("the first reset must start every world")
        shape = None if self.last is None else tuple(self.last.frames.shape[1:])
        states = []
        for seed in seeds:  # every world of one simulator has the first world's map size
            states.append(self.start_state(int(seed), shape))
            shape = states[0].frame.shape
        states = iter(states)
        pick = [next(states) if m else None for m in marked]
        old = self.last
        frames = torch.stack([torch.from_numpy(s.frame) if s else old.frames[i].cpu() for i, s in enumerate(pick)])
        if len({tuple(f.shape) for f in frames}) > 1:
            raise ValueError(f"{self.substrate}: start states of different map sizes cannot share one simulator")
        players = PlayerStates.stack([s.players.to("cpu") if s else old.players[i].to("cpu")
                                      for i, s in enumerate(pick)]).to(self.device)
        sim = self.sim
        if reseed is not None and hasattr(sim, "reseed"):
            sim.reseed(int(reseed))
        mask = None if worlds is None else worlds.to(self.device)
        reset_simulator(sim, frames.to(self.device), players, mask)
        started = np.flatnonzero(marked)
        self.steps[started] = 0
        if self.episode_end is not None:  # a stream of its own, so the end leaves every other draw as it was
            self.ends_at[started] = [self.episode_end.draw_step(np.random.default_rng([int(seed), EPISODE_END_STREAM]))
                                     for seed in seeds]
        self.last = StepResult(frames.to(self.device), players,
                               torch.zeros(b, self.num_players, dtype=torch.float32, device=self.device))
        return self.views(self.last)

    def step(self, actions: torch.Tensor) -> torch.Tensor:
        """One simulator call for every world; actions [B,N] long (validated by the caller)."""
        self.last = self.sim.step(actions.to(self.device))
        self.steps += 1
        return self.views(self.last)

    def ended(self, by_rule: np.ndarray | None) -> np.ndarray:
        """[B] bool: the worlds whose episode the game ends at the last step, on its clock (`games.EpisodeEnd`)
        or by a rule of the world (`by_rule`: the last `StepResult.terminated` on the host, or None)."""
        on_clock = self.steps >= self.ends_at
        return on_clock if by_rule is None else on_clock | by_rule.reshape(self.num_worlds)

    def views(self, result: StepResult) -> torch.Tensor:
        """uint8 [B,N,V,V,3]: each player's view of its world, black for players not alive."""
        return egocentric_views(result.frames, result.cells, result.facing, self.game.view, result.alive,
                                self.view_table)


class DreamParallelEnv(PlayersEnv):
    """One dream world of a Melting Pot substrate as a PettingZoo ParallelEnv.

    Agents, spaces and `infos` (`cell`, `facing`, `alive`) are those of `RealParallelEnv` (both are
    a `PlayersEnv`, players.py). Rewards are drawn from the model's reward head over the game's payoffs,
    or paid by the game's rule where the dream has one (coins, predator_prey's predators: model/sampler.py,
    "Decoding"); `infos[agent]["expected_reward"]` is the expected value beside it. The dream has no end
    ends where Melting Pot's would (`games.EpisodeEnd`: its clock, drawn from the reset's seed, and the one-shot
    game's end after an interaction): every agent terminates together; `max_cycles` truncates every agent
    together. `state()`/`render()` give the generated global frame.
    """

    metadata = {"render_modes": ["human", "rgb_array"], "name": "actionparty_dream_v0",
                "is_parallelizable": True, "render_fps": 8}

    def __init__(self, substrate: str, *, max_cycles: int = 1000, render_mode: str | None = None,
                 **options: Any) -> None:
        """`options`: `DreamConfig`'s fields (checkpoint, num_players, device, sampling_steps, ...)."""
        max_cycles = check_positive_int("max_cycles", max_cycles)
        self._check_render_mode(render_mode)
        self.dream = DreamWorlds(substrate, num_worlds=1, **options)
        self.substrate = substrate
        self._init_players(self.dream.game, self.dream.num_players, max_cycles, render_mode, f"{substrate} (dream)")

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        """Start from a real start state picked by `seed`; the same seed and actions give the same
        frames on one device. `seed` also seeds later unseeded resets."""
        seed = self._episode_seed(seed)
        views = self.dream.reset([seed], reseed=seed)
        self._begin_episode(self.dream.last.frames.shape[1:])
        obs, _, infos, _ = self._to_host(views)
        return obs, infos

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """Step all agents together; every agent must have a valid action (checked before anything moves)."""
        arr = torch.tensor([self._checked_actions(actions)], dtype=torch.long)
        obs, rewards, infos, terminated = self._to_host(self.dream.step(arr))
        return self._end_step(obs, rewards.tolist(), bool(self.dream.ended(terminated)[0]), infos)

    def state(self) -> np.ndarray:
        """The generated global frame, uint8 (rows*8, cols*8, 3)."""
        if self.dream.last is None:
            raise RuntimeError("call reset() before state()")
        return self.dream.last.frames[0].cpu().numpy().copy()  # never a view of the simulator's state

    def _to_host(self, views: torch.Tensor) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, dict],
                                                     np.ndarray | None]:
        """(observations, rewards [N], infos, the rule's `terminated` [1] or None) of the world's last step,
        read from the device in one wait."""
        last = self.dream.last
        expected = None if last.expected_rewards is None else last.expected_rewards[0].float()
        views, rewards, cells, facing, alive, expected, terminated = (None if t is None else t.numpy() for t in to_host(
            views[0], last.rewards[0], last.cells[0], last.facing[0], last.alive[0], expected, last.terminated))
        infos = self._player_infos(PlayerStates(cells, facing, alive))
        for agent, value in zip(self.possible_agents, () if expected is None else expected.tolist()):
            infos[agent]["expected_reward"] = value  # the model's expected reward beside the drawn one
        return {a: views[i] for i, a in enumerate(self.possible_agents)}, rewards, infos, terminated


def to_host(*tensors: torch.Tensor | None) -> list[torch.Tensor | None]:
    """The tensors copied to the host with one wait: on a GPU every copy is queued without waiting
    (into pinned memory), then the stream is synchronised once, instead of one round trip a tensor.
    A None (an output the simulator does not have) stays None."""
    if not tensors or tensors[0].device.type != "cuda":
        return [None if t is None else t.cpu() for t in tensors]
    copies = [None if t is None else t.to("cpu", non_blocking=True) for t in tensors]
    torch.cuda.current_stream(tensors[0].device).synchronize()
    return copies


def parallel_env(substrate: str, **kwargs: Any) -> DreamParallelEnv:
    """The dream of `substrate` as a PettingZoo ParallelEnv: `DreamParallelEnv`'s arguments (max_cycles,
    render_mode) and `DreamConfig`'s (checkpoint=None: the bundled model; num_players, device, ...).
    `consistent_sprites=False` draws frames without the sprite constraint (actionparty_env/model/sprites.py);
    `decoding="argmax"` puts every random event at its mode (actionparty_env/model/sampler.py)."""
    return DreamParallelEnv(substrate, **kwargs)
