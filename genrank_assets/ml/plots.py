"""Small matplotlib plots (Agg backend) for Dagster metadata and reports."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish(plt, fig, ax, path, *, title: str, legend: bool = True) -> Path:
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def history_plot(history: Sequence[dict], keys: Sequence[str], path: str | Path, *, title: str, x: str = "epoch") -> Path:
    """One line per key of the per-epoch history (e.g. train_loss / val_loss)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for key in keys:
        pts = [(row[x], row[key]) for row in history if row.get(key) is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=key)
    ax.set_xlabel(x)
    return _finish(plt, fig, ax, path, title=title)


def curves_plot(curves: dict[str, dict[int, float]], path: str | Path, *, title: str, xlabel: str, ylabel: str,
                logx: bool = False) -> Path:
    """Several named curves x -> y (e.g. recall@K per method)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=100)
    for name, pts in curves.items():
        xs = sorted(pts)
        ax.plot(xs, [pts[k] for k in xs], marker="o", label=name)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return _finish(plt, fig, ax, path, title=title)


def bar_plot(values: dict[str, float], path: str | Path, *, title: str, ylabel: str) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 3.5), dpi=100)
    names = list(values)
    ax.bar(names, [values[n] for n in names])
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", labelrotation=20)
    return _finish(plt, fig, ax, path, title=title, legend=False)


def markdown_image(path: str | Path, alt: str = "plot") -> str:
    """Inline a PNG into Markdown (Dagster's UI renders data URIs in Markdown metadata)."""
    import base64

    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f"![{alt}](data:image/png;base64,{data})"
