"""A picture of a run: training loss, validation loss per category and the learning rate.

    python -m codette_np.plot runs/micro            # writes runs/micro/loss.png
    python -m codette_np.plot runs/micro --out curves.png

Reads the run's metrics.jsonl. Drawn with matplotlib, an optional extra
(pip install 'codette_np[plot]'); the trainer draws it at the end of a run
when matplotlib is there and otherwise says how to get it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from codette_np.argtypes import Parser

INSTALL_HINT = "pip install 'codette_np[plot]' (matplotlib)"


class PlotError(RuntimeError):
    pass


def read_metrics(run_dir) -> tuple[list[dict], list[dict]]:
    """(step records, eval records) of a run; unreadable lines are skipped."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise PlotError(f"no metrics.jsonl in {run_dir}")
    steps, evals = [], []
    for line in path.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(rec, dict):
            continue
        if rec.get("kind") == "eval":
            evals.append(rec)
        elif "loss" in rec:
            steps.append(rec)
    if not steps:
        raise PlotError(f"{path} holds no training steps yet")
    return steps, evals


def plot_run(run_dir, out=None) -> Path:
    """Draw loss.png (or `out`) for a run directory; PlotError without matplotlib or data."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotError(f"matplotlib is not installed: {INSTALL_HINT}") from None
    steps, evals = read_metrics(run_dir)
    out = Path(out) if out is not None else Path(run_dir) / "loss.png"
    fig, (ax, ax_lr) = plt.subplots(2, 1, figsize=(9, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    x = [r["step"] for r in steps]
    ax.plot(x, [r["loss"] for r in steps], lw=0.8, alpha=0.6, color="tab:gray", label="training loss")
    cats = sorted({c for e in evals for c in e.get("categories", {})})
    for cat in cats:
        pts = [(e["step"], e["categories"][cat]["loss"]) for e in evals if cat in e.get("categories", {})]
        ax.plot(*zip(*pts), marker="o", ms=4, label=f"validation: {cat}")
    if evals:
        ax.plot([e["step"] for e in evals], [e["overall"]["loss"] for e in evals], marker="s", ms=5, color="black",
                label="validation: overall")
    ax.set_ylabel("cross-entropy (nats per token)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{Path(run_dir).resolve().name}: {x[-1]} steps")
    ax_lr.plot(x, [r["lr"] for r in steps], color="tab:blue")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("step")
    ax_lr.grid(True, alpha=0.3)
    fig.tight_layout()
    tmp = out.with_name(f".{out.name}.tmp.png")
    try:
        fig.savefig(tmp, dpi=110)
        tmp.replace(out)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise PlotError(f"cannot write {out}: {e.strerror or e}") from None
    finally:
        plt.close(fig)
    return out


def main(argv=None) -> int:
    ap = Parser(prog="python -m codette_np.plot", description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", help="a run directory (it holds metrics.jsonl)")
    ap.add_argument("--out", default=None, help="the PNG to write (default RUN_DIR/loss.png)")
    a = ap.parse_args(argv)
    try:
        print(f"wrote {plot_run(a.run_dir, a.out)}")
    except PlotError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
