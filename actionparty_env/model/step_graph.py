"""The dream's step as one CUDA graph (issue 14): launched by the host in one call instead of ~700.

On a GPU a world-step is a few hundred small kernels (three transformer passes, the decoding's
scatters and sorts), and with one world the host's time to launch them, not the GPU's time to run
them, sets the pace (benchmarks/results/speed_h200.md: 19 ms a step, under 1% of the chip's rate).
A CUDA graph records the kernels of one step once and replays them with one launch. That needs a step
whose shapes, branches and tensor addresses never change, which the sampler's step is once the
KV cache's window is full (`KVCache.steady`, with `static=True`): no host sync, and everything the
host decides (the window, whether keys are hidden) stays as it was.

`StepGraph` takes the step as three functions of its owner: `state()` lists every tensor a step reads
that the step or a reset replaces (frame codes, player states, stamina, cache, ...), `load(tensors)`
makes the owner use those tensors, and `step(inputs)` runs one eager step and returns its outputs.
The first call records the step (on its own stream, after one eager warm-up step there: `capture` is
due at the second steady step) into buffers it owns; each later call copies the inputs (and, after a
reset replaced some state tensor, the state) into those buffers and replays. The random draws come from
the owner's `torch.Generator`, registered with the graph, so a replay draws what the eager step would
have drawn: same seed, same dream, with or without the graph. A step that cannot be recorded (one
that reads a tensor back to the host, say, from a rule of the user's) raises at the recording and
leaves the owner's state as it was, so the owner can go on eagerly.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

Tensors = list[torch.Tensor]


class StepGraph:
    """One step of a stateful owner, recorded once as a CUDA graph and replayed (the module doc)."""

    def __init__(self, state: Callable[[], Tensors], load: Callable[[Tensors], None],
                 step: Callable[..., Tensors], generator: torch.Generator):
        self.state, self.load, self.step, self.generator = state, load, step, generator
        self.graph: torch.cuda.CUDAGraph | None = None
        self.stream: torch.cuda.Stream | None = None  # the warm-up and the capture run here
        self.buffers: Tensors = []  # the state the graph reads and writes back
        self.inputs: Tensors = []   # the step's arguments, copied in at each replay
        self.outputs: Tensors = []

    def __call__(self, *inputs: torch.Tensor) -> Tensors:
        """One step: warm up on the graph's stream the first time, record the second, replay from then on."""
        if self.stream is None:
            self.stream = torch.cuda.Stream(inputs[0].device)
            self.stream.wait_stream(torch.cuda.current_stream(inputs[0].device))
            with torch.cuda.stream(self.stream):  # lazy set-ups (cuBLAS workspaces, cached masks) happen here
                outputs = self.step(*inputs)
            torch.cuda.current_stream(inputs[0].device).wait_stream(self.stream)
            return outputs
        if self.graph is None:
            self._capture(inputs)
        state = self.state()
        if any(now is not held for now, held in zip(state, self.buffers)):  # a reset or an eager step replaced some
            for held, now in zip(self.buffers, state):
                if now is not held:
                    held.copy_(now)
            self.load(self.buffers)
        for held, given in zip(self.inputs, inputs):
            held.copy_(given)
        self.graph.replay()
        return [out.clone() for out in self.outputs]  # the caller's to keep; the next replay overwrites these

    def _capture(self, inputs: tuple[torch.Tensor, ...]) -> None:
        """Record one step into buffers of our own (the caller may hold the tensors it was given)."""
        self.buffers = [t.clone() for t in self.state()]
        self.inputs = [t.clone() for t in inputs]
        self.load(self.buffers)
        graph = torch.cuda.CUDAGraph()
        graph.register_generator_state(self.generator)
        try:
            with torch.cuda.graph(graph, stream=self.stream):
                self.outputs = list(self.step(*self.inputs))
                for held, new in zip(self.buffers, self.state()):  # the step's new state, back into the buffers
                    if new is not held:  # (what it only reads stays where it is)
                        held.copy_(new)
        finally:
            self.load(self.buffers)  # the capture ran nothing: the state is as it was
        self.graph = graph
