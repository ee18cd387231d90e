"""The dream step at the hardware's pace (issue 14), checked on the CPU with tiny models.

- The step gives the frames and states it gave before it was made sync-free (digests pinned from the
  sampler of commit c3993f8; the bundled checkpoint's own pins are tests/test_golden_frames.py).
- It never reads a tensor back to the host, so a GPU never stalls inside it.
- Masks and layouts are built once per layout, not per pass.
- Time positions are the blocks' places in the window: they start again with every episode and never
  grow, so a world that has run for a million steps computes exactly what one that has run a few does.
"""
from __future__ import annotations

import contextlib
import hashlib

import pytest
import torch

from actionparty_env.grid import PlayerStates
from actionparty_env.model import attention
from actionparty_env.model.attention import Rope3D
from actionparty_env.model.network import KVCache
from actionparty_env.model.sampler import DreamSimulator
from tests.conftest import TINY_VOCAB, tiny_model

R, C, N, WORLDS, STEPS = 4, 5, 3, 3, 12  # tiny_model's window is 2: 12 steps slide it 10 times

# case: (decoding, temperature, sampling_steps, padded player slot, partial reset at step 5, model switches)
CASES = {
    "calibrated": ("calibrated", 0.0, 1, False, False, {}),
    "argmax": ("argmax", 0.0, 1, False, False, {}),
    "sampled_3_passes": ("argmax", 1.0, 3, False, False, {}),
    "padded": ("calibrated", 0.0, 2, True, False, {}),
    "partial_reset": ("calibrated", 0.0, 1, False, True, {}),
    "padded_partial_reset": ("argmax", 0.0, 2, True, True, {}),
    "ablations": ("argmax", 0.0, 1, False, False,
                  {"frame_occupancy": True, "spatial_rope": False, "subject_isolation": False}),
}
# SHA-256 (first 16 hex digits) of every step's frames, cells, facing and alive, and the sum of the
# rewards, recorded with the sampler before this rewrite (`python -m tests.test_step_speed` prints them).
PINNED = {
    "calibrated": ("786cb2375957089f", 1.7014783537015319),
    "argmax": ("bd4dd63ecd5cc230", 0.04373431112617254),
    "sampled_3_passes": ("0379233222530617", 0.9267272669821978),
    "padded": ("7159311ad06d6eaf", 1.7058868603780866),
    "partial_reset": ("d9ec0ffb1a46b860", 1.425449313595891),
    "padded_partial_reset": ("501e42ef014ab3f1", -0.18492287676781416),
    "ablations": ("8ddcf374a8402471", -10.06071187183261),
}


def start(b: int = WORLDS, seed: int = 5):
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, TINY_VOCAB, (b, R, C), generator=g)
    cells = torch.stack([torch.randint(0, R, (b, N), generator=g), torch.randint(0, C, (b, N), generator=g)], -1)
    facing = torch.randint(0, 4, (b, N), generator=g)
    return codes, PlayerStates(cells, facing, torch.ones(b, N, dtype=torch.bool)), g


def simulator(case: str, static_cache: bool = False, device: str = "cpu", cuda_graph: bool = False,
              compile: bool = False) -> tuple[DreamSimulator, torch.Generator]:
    """`static_cache`: the KV cache a recorded step (cuda_graph) uses, without recording."""
    decoding, temperature, sampling_steps, padded, _, switches = CASES[case]
    sim = DreamSimulator(tiny_model(1, **switches).to(device), "game_a", N, num_worlds=WORLDS, device=device,
                         sampling_steps=sampling_steps, temperature=temperature, seed=3, decoding=decoding,
                         cuda_graph=cuda_graph, compile=compile)
    if static_cache:
        cfg = sim.model.cfg
        sim._new_cache = lambda: KVCache(cfg.depth, cfg.window, sim.model.rope, static=True)
    codes, players, g = start()
    present = torch.tensor([[True, True, False]] * WORLDS) if padded else None
    sim.reset_codes(codes, players, present=present)
    return sim, g


def dream(case: str, during_step=contextlib.nullcontext, static_cache: bool = False, device: str = "cpu",
          cuda_graph: bool = False, new_episode_at: int | None = None, compile: bool = False) -> tuple[str, float]:
    """(digest of every step's frames and states, sum of the rewards) of STEPS steps of `case`
    (`new_episode_at`: a full reset before that step)."""
    sim, g = simulator(case, static_cache, device, cuda_graph, compile)
    codes, players, _ = start()
    digest, rewards = hashlib.sha256(), 0.0
    for s in range(STEPS):
        if CASES[case][4] and s == 5:
            sim.reset_codes(codes.flip(0), players, worlds=torch.tensor([True, False, True]))
        if s == new_episode_at:
            sim.reset_codes(codes.roll(1, 0), players)
        actions = torch.randint(0, 7, (WORLDS, N), generator=g)
        with during_step():
            out = sim.step(actions)
        for t in (out.frames, out.cells, out.facing, out.alive):
            digest.update(t.cpu().contiguous().numpy().tobytes())
        rewards += float(out.rewards.double().sum())
    return digest.hexdigest()[:16], rewards


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_step_gives_the_frames_and_states_it_gave_before(case, one_thread):
    digest, rewards = dream(case)
    assert digest == PINNED[case][0]
    # The tiny model's rewards are a regression head's floats (108 of them summed): once the window has
    # slid, its keys sit at other (window-relative) time positions, which RoPE makes the same scores up
    # to float rounding (the sums moved by at most 2e-7).
    assert rewards == pytest.approx(PINNED[case][1], rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("case", ["calibrated", "padded", "partial_reset", "padded_partial_reset"])
def test_the_static_cache_of_a_recorded_step_gives_the_same_frames(case, one_thread):
    # It keeps a visibility row per world where the plain one drops it (every key visible): the same
    # attention, so the same pinned frames and states.
    digest, rewards = dream(case, static_cache=True)
    assert digest == PINNED[case][0]
    assert rewards == pytest.approx(PINNED[case][1], rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("case", ["padded_partial_reset"])  # padded slots and a reset: masks per world, new shapes
def test_a_compiled_step_gives_the_pinned_frames_and_states(case, one_thread):
    # Inductor fuses the layers' elementwise work (norms, RoPE, residual adds), which may round floats
    # differently; the codes, cells and facings drawn from them are the pinned ones all the same.
    digest, rewards = dream(case, compile=True)
    assert digest == PINNED[case][0]
    assert rewards == pytest.approx(PINNED[case][1], rel=1e-5, abs=1e-5)


def test_the_compiled_layers_stay_compiled_across_many_pass_shapes(one_thread):
    # Three player counts and two batch sizes on one model: more graphs than dynamo's default limit of 8 a
    # code object, past which the layers would run eagerly without a word.
    from torch._dynamo.utils import counters
    torch._dynamo.reset()
    counters.clear()
    model = tiny_model(1)
    for players, worlds in ((1, 1), (2, 2), (3, 3), (2, 1)):
        sim = DreamSimulator(model, "game_a", players, num_worlds=worlds, seed=3, compile=True)
        codes, states, g = start(worlds)
        sim.reset_codes(codes, states[:, :players])
        for _ in range(model.cfg.window + 2):
            sim.step(torch.randint(0, 7, (worlds, players), generator=g))
    assert counters["stats"]["unique_graphs"] > 8
    assert not [k for k in counters["unimplemented"] if "recompile limit" in k.lower()]


def test_compiling_leaves_the_model_eager_for_its_other_users(one_thread):
    sim, _ = simulator("calibrated", compile=True)
    assert sim.compiled and all(type(layer).__name__ == "Layer" for layer in sim.model.layers)
    assert [c._orig_mod for c in sim.model.compiled_layers()] == list(sim.model.layers)  # same weights


def test_the_static_cache_is_steady_once_the_window_is_full(one_thread):
    sim, g = simulator("partial_reset", static_cache=True)
    codes, players, _ = start()
    window, seen = sim.model.cfg.window, []
    for s in range(3 * window):
        if s == window + 1:
            sim.reset_codes(codes, players, worlds=torch.tensor([True, False, False]))  # a partial reset stays steady
        seen.append(sim.cache.steady())
        shapes = [None if t is None else tuple(t.shape) for t in sim.cache.tensors()]
        sim.step(torch.randint(0, 7, (WORLDS, N), generator=g))
        if seen[-1]:  # a steady commit changes no shape
            assert [tuple(t.shape) for t in sim.cache.tensors()] == shapes
    assert seen == [False] * window + [True] * (2 * window)
    sim.reset_codes(codes, players)  # a new episode starts a new cache
    assert not sim.cache.steady()


def test_the_step_state_holds_everything_a_step_changes(one_thread):
    """What a recorded step carries from one replay to the next (`_step_state`): loading a copy of it,
    with the generator's state, replays the same steps (a tensor missing from it would stay changed)."""
    for case in ("calibrated", "padded_partial_reset"):
        sim, g = simulator(case, static_cache=True)
        actions = [torch.randint(0, 7, (WORLDS, N), generator=g) for _ in range(6)]
        for a in actions[:3]:  # the window (2) full: the state a graph is recorded in
            sim.step(a)
        saved, rng = [t.clone() for t in sim._step_state()], sim.generator.get_state()
        first = [sim.step(a) for a in actions[3:]]
        sim._load_step_state([t.clone() for t in saved])
        sim.generator.set_state(rng)
        again = [sim.step(a) for a in actions[3:]]
        for one, two in zip(first, again):
            for field in ("frames", "cells", "facing", "alive", "rewards"):
                assert torch.equal(getattr(one, field), getattr(two, field)), (case, field)


@pytest.mark.parametrize("substrate", ["predator_prey__alley_hunt", "clean_up", "coins", "commons_harvest__open",
                                       "externality_mushrooms__dense", "stag_hunt_in_the_matrix__arena"])
def test_the_bundled_dreams_step_makes_no_tensor_on_the_host(substrate, one_thread):
    """The CPU's stand-in for the GPU's recording check: inside a step (every rule of the game on), no
    tensor is made from host data (torch.tensor, as_tensor, from_numpy) and no factory call lacks a device,
    each a host-to-device copy a CUDA graph cannot record (the apple and zap rules' first tables were)."""
    import numpy as np

    from actionparty_env.env import DreamWorlds

    worlds = DreamWorlds(substrate, num_worlds=2, device="cpu")
    worlds.reset([0, 1])
    sim, n = worlds.sim, worlds.num_players
    actions = torch.as_tensor(np.random.default_rng(0).integers(0, worlds.game.num_actions, (2, n)))
    action_ids = sim.action_ids[actions]
    sim.advance(action_ids)

    def refuse(name):
        def call(*args, **kwargs):
            raise AssertionError(f"torch.{name} inside the step: a host tensor")
        return call

    def needs_device(name, factory):
        def call(*args, **kwargs):
            assert "device" in kwargs, f"torch.{name} inside the step without a device: a host tensor"
            return factory(*args, **kwargs)
        return call

    with pytest.MonkeyPatch.context() as mp:
        for name in ("tensor", "as_tensor", "from_numpy"):
            mp.setattr(torch, name, refuse(name))
        for name in ("arange", "zeros", "ones", "full", "empty", "rand", "randint", "randn", "eye"):
            mp.setattr(torch, name, needs_device(name, getattr(torch, name)))
        for _ in range(3):
            sim.advance(action_ids)


# ------------------------------------------------------------------------------- the recorded step (GPU)
cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU: the lease runs "
                               "`python -m pytest tests/test_step_speed.py -k recorded` (docs/TRAINING.md)")


@cuda_only
@pytest.mark.parametrize("case", ["calibrated", "sampled_3_passes", "padded", "padded_partial_reset", "ablations"])
@pytest.mark.parametrize("new_episode_at", [None, 7])
def test_a_recorded_step_dreams_what_the_eager_step_dreams(case, new_episode_at):
    # The eager step with the recorded step's cache: the same kernels, so the same bits; the graph
    # is recorded at step 4 (the window of 2 full, one warm-up step) and replayed after each reset.
    eager = dream(case, static_cache=True, device="cuda", new_episode_at=new_episode_at)
    assert dream(case, device="cuda", cuda_graph=True, new_episode_at=new_episode_at) == eager


@cuda_only
@pytest.mark.parametrize("case", ["calibrated", "padded_partial_reset"])
def test_a_recorded_compiled_step_dreams_what_the_eager_compiled_step_dreams(case):
    # The compiled layers' kernels (Triton's) recorded into the step's graph: replayed, the same bits.
    eager = dream(case, static_cache=True, device="cuda", new_episode_at=7, compile=True)
    assert dream(case, device="cuda", cuda_graph=True, new_episode_at=7, compile=True) == eager


@cuda_only
@pytest.mark.parametrize("substrate", ["predator_prey__alley_hunt", "clean_up", "coins", "commons_harvest__open",
                                       "externality_mushrooms__dense", "stag_hunt_in_the_matrix__arena"])
def test_the_bundled_dream_recorded_is_the_bundled_dream_eager(substrate):
    # The bundled checkpoint with every rule of the game (stamina, meals, bars in predator_prey; the
    # void in coins), through the PettingZoo env: 24 steps, a new episode, 12 more.
    import numpy as np

    import actionparty_env

    def run(cuda_graph: bool) -> tuple[str, bool]:
        env = actionparty_env.parallel_env(substrate, device="cuda", cuda_graph=cuda_graph)
        sim = env.dream.sim
        if not cuda_graph:  # the recorded step's cache, stepped eagerly
            cfg = sim.model.cfg
            sim._new_cache = lambda: KVCache(cfg.depth, cfg.window, sim.model.rope, static=True)
        rng, digest = np.random.default_rng(0), hashlib.sha256()
        for seed, steps in ((3, 24), (4, 12)):
            env.reset(seed=seed)
            for _ in range(steps):
                _, rewards, _, _, infos = env.step({a: int(rng.integers(env.action_space(a).n)) for a in env.agents})
                digest.update(env.state().tobytes())
                digest.update(repr((rewards, [infos[a]["cell"] for a in env.possible_agents])).encode())
        return digest.hexdigest(), sim.step_graph is not None and sim.step_graph.graph is not None

    recorded, eager = run(True), run(False)
    assert recorded[1], "the step was never recorded"
    assert recorded[0] == eager[0]


@cuda_only
def test_a_recorded_step_is_replayed_not_run_again():
    sim, g = simulator("calibrated", device="cuda", cuda_graph=True)
    for _ in range(4):
        sim.step(torch.randint(0, 7, (WORLDS, N), generator=g))
    assert sim.step_graph.graph is not None
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(DreamSimulator, "_advance", lambda *a: pytest.fail("the step ran eagerly"))
        for _ in range(3):
            sim.step(torch.randint(0, 7, (WORLDS, N), generator=g))


# ---------------------------------------------------------------------------------------------- no host sync
class HostSync(AssertionError):
    pass


@contextlib.contextmanager
def no_host_reads():
    """Every way a tensor's value can reach the host raises HostSync: .item(), .tolist(), .cpu(),
    .numpy(), bool/int/float/index of a tensor (so also `if tensor:`), nonzero, and boolean-mask
    indexing (which needs the count of set elements). On a GPU each of these waits for the device.
    Copies the other way, of a Python value to the device, wait there too but not on a CPU, so they are
    beyond this guard (grid.py's: docs/ARCHITECTURE.md, "Speed: the step")."""
    def refuse(name):
        def raising(*args, **kwargs):
            raise HostSync(f"host read inside the step: {name}")
        return raising

    getitem, setitem = torch.Tensor.__getitem__, torch.Tensor.__setitem__

    def has_mask(index) -> bool:
        items = index if isinstance(index, tuple) else (index,)
        return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in items)

    def checked_get(self, index):
        if has_mask(index):
            raise HostSync("host read inside the step: boolean-mask indexing")
        return getitem(self, index)

    def checked_set(self, index, value):
        if has_mask(index):
            raise HostSync("host read inside the step: boolean-mask assignment")
        return setitem(self, index, value)

    patches = {name: refuse(name) for name in ("item", "tolist", "cpu", "numpy", "nonzero", "__bool__", "__int__",
                                               "__float__", "__index__", "unique", "masked_select")}
    patches.update(__getitem__=checked_get, __setitem__=checked_set)
    with pytest.MonkeyPatch.context() as mp:
        for name, fn in patches.items():
            mp.setattr(torch.Tensor, name, fn)
        mp.setattr(torch, "nonzero", refuse("torch.nonzero"))
        mp.setattr(torch, "unique", refuse("torch.unique"))
        mp.setattr(torch, "masked_select", refuse("torch.masked_select"))
        yield


def test_the_guard_catches_host_reads():
    x = torch.ones(3)
    with no_host_reads():
        for read in (lambda: x.sum().item(), lambda: bool(x.all()), lambda: x[x > 0], lambda: x.nonzero(),
                     lambda: x.tolist(), lambda: int(x[0])):
            with pytest.raises(HostSync):
                read()


@pytest.mark.parametrize("case", ["calibrated", "sampled_3_passes", "padded_partial_reset", "ablations"])
def test_a_step_reads_nothing_back_to_the_host(case, one_thread):
    # The reset may read back (it encodes frames on the host); every step, including the window's
    # slides and the steps after a partial reset, may not. The results are those pinned above.
    assert dream(case, during_step=no_host_reads)[0] == PINNED[case][0]


# ------------------------------------------------------------------------------------------ cached masks
def test_masks_and_layouts_are_built_once_per_layout(one_thread):
    sim, g = simulator("padded_partial_reset")
    window = sim.model.cfg.window
    for _ in range(window + 2):  # every layout a step meets: the window filling, then full
        sim.step(torch.randint(0, 7, (WORLDS, N), generator=g))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(attention, "visibility", lambda *a, **k: pytest.fail("a mask was rebuilt"))
        mp.setattr(attention, "_one_block", lambda *a, **k: pytest.fail("a layout was rebuilt"))
        for _ in range(3):
            sim.step(torch.randint(0, 7, (WORLDS, N), generator=g))


# --------------------------------------------------------------------------------------- time positions
@contextlib.contextmanager
def recorded_time_positions():
    """The largest time position RoPE is asked for, per call, in order."""
    seen, angles = [], Rope3D.angles

    def recording(self, block, row, col):
        seen.append(int(block.max()) if block.numel() else 0)
        return angles(self, block, row, col)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Rope3D, "angles", recording)
        yield seen


def test_time_positions_never_pass_the_window_and_restart_with_each_episode(one_thread):
    sim, g = simulator("partial_reset")
    window = sim.model.cfg.window
    codes, players, _ = start()
    with recorded_time_positions() as seen:
        for s in range(5 * window + 3):
            if s == 2 * window:
                sim.reset_codes(codes, players, worlds=torch.tensor([True, False, True]))
            sim.step(torch.randint(0, 7, (WORLDS, N), generator=g))
        assert max(seen) == window  # the old block counter reached 5 * window + 3
        seen.clear()
        sim.reset_codes(codes, players)  # a new episode
        sim.step(torch.randint(0, 7, (WORLDS, N), generator=g))
        assert seen[0] == 0  # the first pass of an episode is at time 0, as in training


def test_a_new_episode_computes_exactly_what_a_fresh_simulator_does(one_thread):
    """After a long episode, a reset starts the time positions again: the next episode is bit-identical
    (rewards included) to the same episode on a simulator that never ran before."""
    codes, players, _ = start()
    actions = [torch.randint(0, 7, (WORLDS, N), generator=torch.Generator().manual_seed(s)) for s in range(8)]

    def episode(sim):
        sim.reset_codes(codes, players)
        sim.reseed(11)
        return [sim.step(a) for a in actions]

    veteran, _ = simulator("argmax")
    for a in actions * 5:
        veteran.step(a)
    fresh, _ = simulator("argmax")
    for old, new in zip(episode(veteran), episode(fresh)):
        for field in ("frames", "cells", "facing", "alive", "rewards", "expected_rewards"):
            assert torch.equal(getattr(old, field), getattr(new, field)), field


def test_nothing_in_the_simulator_counts_steps(one_thread):
    """A world's step depends on its frames, states and cached keys, never on how long it has run: no
    number in the simulator or its cache differs between 2 and 40 windows into an episode, so a step at
    block 1e6 runs exactly the computation of a step at block 2 * window (the old block counter, the
    time position of RoPE, moved a logit by 0.6 at block 1e7)."""
    def numbers(sim) -> dict:
        return {f"{owner}.{name}": value for owner, obj in (("sim", sim), ("cache", sim.cache))
                for name, value in vars(obj).items() if isinstance(value, (int, float))}

    sim, g = simulator("calibrated")
    window = sim.model.cfg.window
    seen = []
    for s in range(40 * window):
        sim.step(torch.randint(0, 7, (WORLDS, N), generator=g))
        if s + 1 in (2 * window, 40 * window):
            seen.append(numbers(sim))
    assert seen[0] == seen[1]


if __name__ == "__main__":  # python -m tests.test_step_speed: the digests of CASES with this working tree's sampler
    torch.set_num_threads(1)
    for case in CASES:
        print(case, dream(case))
