"""Plots of the fidelity benchmark: each metric against the horizon, per run (matplotlib, off-screen)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

PER_STEP = {"follow": "action-following (step t-1 -> t)", "preserve": "subject preservation",
            "traj": "trajectory agreement", "cell": "cell accuracy", "heads": "state heads = detector"}
STYLE = {"dream": dict(color="tab:blue"), "copy_last": dict(color="tab:gray", linestyle="--"),
         "real": dict(color="tab:green", linestyle=":")}
OTHER_COLORS = ("tab:orange", "tab:red", "tab:purple", "tab:brown", "tab:olive", "tab:cyan")  # ablations etc.


def plot_horizons(result: dict, path: str | Path, where: str = "overall") -> Path:
    """One panel per metric: its value at each step t = 1..H (not pooled), a line per run; PSNR too."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(PER_STEP) + ["psnr"]
    fig, axes = plt.subplots(2, 3, figsize=(14, 7.5))
    others = iter(OTHER_COLORS * 4)
    style = {run: STYLE.get(run) or dict(color=next(others)) for run in result["runs"]}
    for ax, metric in zip(axes.flat, panels):
        for run, per in result["runs"].items():
            curves = per.get(where, {}).get("curves", {})
            key = "sqerr" if metric == "psnr" else metric
            if key not in curves:
                continue
            num, den = (np.asarray(a, float) for a in curves[key])
            t = np.flatnonzero(den[1:] > 0) + 1
            if not len(t):
                continue
            y = num[t] / den[t]
            if metric == "psnr":  # identical frames (the real run) have no finite PSNR: not drawn
                t, y = t[y > 0], 10 * np.log10(255.0 ** 2 / y[y > 0])
            ax.plot(t, y, label=run, **style[run])
        ax.set_title(PER_STEP.get(metric, "PSNR (dB)"))
        ax.set_xlabel("step t (closed loop)")
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
        if metric != "psnr":
            ax.set_ylim(-0.02, 1.02)
    axes.flat[0].legend()
    meta = result["meta"]
    fig.suptitle(f"Fidelity to the real Melting Pot ({where}; {meta['episodes']} {meta['split']} episodes, "
                 f"{len(result['substrates'])} substrates, {meta['device_name']})")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


if __name__ == "__main__":  # python -m benchmarks.plots RESULTS.json[.gz]: the plot beside it
    from benchmarks.provenance import load_results, results_stem
    for name in sys.argv[1:]:
        print(plot_horizons(load_results(name), Path(name).with_name(results_stem(name) + "_horizons.png")))
