"""Loss curves of a training run from its metrics.jsonl (training/train.py): the training loss and its
terms, and the validation loss, against the step; self-forcing (rollout) steps shaded.

    python scripts/plot_training.py benchmarks/results/train_metrics_h100.jsonl docs/media/loss_curves.png \
        --rollout-from 3600
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after the backend choice)

TERMS = ("loss", "code", "cell", "facing", "alive", "reward")


def plot(metrics: Path, out: Path, title: str, rollout_from: int | None = None) -> Path:
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    train = [r for r in rows if "loss" in r]
    val = [r for r in rows if "val/loss" in r]
    if not train:
        raise ValueError(f"{metrics}: no training rows (lines with 'loss')")
    fig, (ax_train, ax_val) = plt.subplots(1, 2, figsize=(11, 4), sharex=True, sharey=True)
    steps = [r["step"] for r in train]
    for term in TERMS:
        ax_train.plot(steps, [max(r[term], 1e-4) for r in train], label="total" if term == "loss" else term,
                      lw=2 if term == "loss" else 1)
    # Rows only flag the logged batch, so the first flagged row can come late: prefer the config's step.
    first_rollout = rollout_from or next((r["step"] for r in train if r.get("rollout")), None)
    for ax in (ax_train, ax_val):
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if first_rollout is not None:
            ax.axvspan(first_rollout, steps[-1], color="grey", alpha=0.12,
                       label="self-forcing batches on" if ax is ax_train else None)
    ax_train.set_title("training loss (one batch per point)")
    ax_train.set_ylabel("loss")
    ax_train.legend(fontsize=8, ncol=2)
    for term in TERMS:
        key = f"val/{term}"
        ax_val.plot([r["step"] for r in val], [max(r[key], 1e-4) for r in val], "o-",
                    label="total" if term == "loss" else term, lw=2 if term == "loss" else 1)
    ax_val.set_title("validation loss (EMA weights, 20 batches)")
    ax_val.legend(fontsize=8, ncol=2)
    fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("metrics", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--title", default="Bundled checkpoint: one H100, 10 min, 3,909 steps of 48 clips")
    p.add_argument("--rollout-from", type=int, help="the step self-forcing batches start at (rollout_after x "
                   "max_steps); default: the first logged rollout row")
    args = p.parse_args(argv)
    print(plot(args.metrics, args.out, args.title, args.rollout_from))


if __name__ == "__main__":
    main()
