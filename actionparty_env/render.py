"""Frames to pictures: nearest-neighbour upscaling, GIFs, a side-by-side of views, and a window.

Frames are uint8 (H, W, 3) numpy arrays (the global frame or a player's view).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def upscale(frame: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscale by an integer factor (sprites stay crisp)."""
    if scale == 1:
        return frame
    return np.repeat(np.repeat(frame, scale, axis=0), scale, axis=1)


def tile(images: Sequence[np.ndarray], cols: int | None = None, pad: int = 2) -> np.ndarray:
    """Lay same-sized images out on a grid with `pad` black pixels between them."""
    n = len(images)
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    h, w, c = images[0].shape
    out = np.zeros((rows * (h + pad) - pad, cols * (w + pad) - pad, c), np.uint8)
    for i, img in enumerate(images):
        r, q = divmod(i, cols)
        out[r * (h + pad): r * (h + pad) + h, q * (w + pad): q * (w + pad) + w] = img
    return out


def beside(left: np.ndarray, right: np.ndarray, pad: int = 4) -> np.ndarray:
    """Put two images side by side, top-aligned, padding the shorter one with black."""
    h = max(left.shape[0], right.shape[0])
    out = np.zeros((h, left.shape[1] + pad + right.shape[1], 3), np.uint8)
    out[: left.shape[0], : left.shape[1]] = left
    out[: right.shape[0], left.shape[1] + pad:] = right
    return out


def save_gif(frames: Sequence[np.ndarray], path: str | Path, fps: float = 8.0, scale: int = 1) -> Path:
    """Write frames as a looping GIF (creates the parent folder)."""
    from PIL import Image

    if not frames:
        raise ValueError("save_gif: no frames to write")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(upscale(np.asarray(f, np.uint8), scale)) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path


class Window:
    """A matplotlib window that shows one frame after another (render_mode="human").

    Fails at construction with a RuntimeError when there is no display: matplotlib then picks a
    non-interactive backend and nothing would appear. Setting MPLBACKEND explicitly (e.g. "Agg" in
    tests, to draw off-screen) is taken as the caller's choice and allowed.
    """

    def __init__(self, title: str = "actionparty", fps: float = 8.0) -> None:
        try:
            import matplotlib
            import matplotlib.pyplot as plt
            from matplotlib.backends import BackendFilter, backend_registry
        except ImportError as e:
            raise RuntimeError("render_mode='human' needs matplotlib: pip install matplotlib") from e
        backend = matplotlib.get_backend().lower()
        headless = backend in backend_registry.list_builtin(BackendFilter.NON_INTERACTIVE)
        if headless and not os.environ.get("MPLBACKEND"):
            raise RuntimeError(
                f"render_mode='human' needs a display, but matplotlib found none (backend {backend!r}, "
                f"DISPLAY={os.environ.get('DISPLAY')!r}); use render_mode='rgb_array', or set MPLBACKEND "
                "to draw off-screen"
            )
        self._plt, self.title, self.fps = plt, title, fps
        self._fig = self._image = None

    def show(self, frame: np.ndarray) -> None:
        if self._fig is None:
            self._fig, ax = self._plt.subplots(num=self.title)
            ax.set_axis_off()
            self._image = ax.imshow(frame, interpolation="nearest")
        else:
            self._image.set_data(frame)
        self._fig.canvas.draw_idle()
        self._plt.pause(1.0 / self.fps)

    def close(self) -> None:
        if self._fig is not None:
            self._plt.close(self._fig)
            self._fig = self._image = None
