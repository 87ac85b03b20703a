"""Small matplotlib plots (Agg backend) for Dagster metadata and reports."""
from __future__ import annotations

import textwrap
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
    return _save(plt, fig, path)


def _save(plt, fig, path) -> Path:
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
        ticks = sorted({x for pts in curves.values() for x in pts})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
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


def _label_bars(ax, bars, fmt: str, *, horizontal: bool = False) -> None:
    """Print each bar's value at its end (``fmt`` e.g. ``"{:.1f}"``)."""
    for bar in bars:
        value = bar.get_width() if horizontal else bar.get_height()
        if horizontal:
            ax.annotate(fmt.format(value), (value, bar.get_y() + bar.get_height() / 2), xytext=(3, 0),
                        textcoords="offset points", va="center", ha="left", fontsize=8)
        else:
            ax.annotate(fmt.format(value), (bar.get_x() + bar.get_width() / 2, value), xytext=(0, 2),
                        textcoords="offset points", ha="center", va="bottom", fontsize=7)


def wrap_label(name: str, width: int = 18) -> str:
    """A long snake_case name on several lines, broken after underscores (``generate_and_rank_`` / ``hybrid``)."""
    lines, line = [], ""
    for part in name.replace("_", "_\0").split("\0"):
        if line and len(line) + len(part) > width:
            lines.append(line)
            line = ""
        line += part
    return "\n".join(lines + [line])


def grouped_bar_plot(groups: dict[str, dict[str, float]], path: str | Path, *, title: str, ylabel: str,
                     fmt: str = "{:.1f}", note: str = "", series_order: Sequence[str] = ()) -> Path:
    """One bar per (group, series): a cluster of bars per group on the x axis (e.g. a method), one colour per
    series (e.g. a pipeline stage) across groups, each bar's value printed above it. A group shows only the
    series it has, centred on its tick; series go in ``series_order``, then in order of appearance."""
    plt = _plt()
    seen = list(dict.fromkeys(name for values in groups.values() for name in values))
    series = [s for s in series_order if s in seen] + [s for s in seen if s not in series_order]
    names = list(groups)
    widest = max([len(v) for v in groups.values()] + [1])
    width = 0.8 / widest
    fig, ax = plt.subplots(figsize=(max(6.5, 0.6 * sum(len(v) for v in groups.values()) + 2), 4.4), dpi=100)
    placed: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in series}
    for i, group in enumerate(names):
        present = [name for name in series if name in groups[group]]
        for j, name in enumerate(present):
            placed[name][0].append(i + (j - (len(present) - 1) / 2) * width)
            placed[name][1].append(groups[group][name])
    for j, name in enumerate(series):
        xs, ys = placed[name]
        _label_bars(ax, ax.bar(xs, ys, width=width * 0.92, label=name, color=f"C{j}"), fmt)
    ax.set_xticks(range(len(names)), [wrap_label(n) for n in names], fontsize=8)
    ax.set_ylabel(ylabel)
    ax.margins(y=0.15)
    if note:
        ax.set_xlabel(note, fontsize=8)
    return _finish(plt, fig, ax, path, title=title)


def interval_bar_plot(values: dict[str, tuple[float, float, float]], path: str | Path, *, title: str, xlabel: str,
                      highlight: Sequence[str] = (), fmt: str = "{:.3f}") -> Path:
    """Horizontal bars, one per name, top to bottom in the given order: value with a (low, high) error bar,
    the value printed beside it; ``highlight`` names are drawn in another colour."""
    plt = _plt()
    names = list(values)
    fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(names) + 1.4), dpi=100)
    ys = list(range(len(names)))[::-1]
    vals = [values[n][0] for n in names]
    err = [[values[n][0] - values[n][1] for n in names], [values[n][2] - values[n][0] for n in names]]
    colors = ["C1" if n in highlight else "C0" for n in names]
    ax.barh(ys, vals, xerr=err, color=colors, capsize=3, error_kw={"elinewidth": 1})
    for y, n in zip(ys, names):
        v, _, hi = values[n]
        ax.annotate(fmt.format(v), (hi, y), xytext=(4, 0), textcoords="offset points", va="center", fontsize=8)
    ax.set_yticks(ys, names)
    ax.set_xlabel(textwrap.fill(xlabel, 50), fontsize=9)  # centred under the axes: long labels wrap, not overflow
    ax.set_xlim(0, max([values[n][2] for n in names] + [1e-9]) * 1.18)
    return _finish(plt, fig, ax, path, title=title, legend=False)


def code_usage_plot(codes, sizes: Sequence[int], path: str | Path, *, title: str = "Code usage per level") -> Path:
    """Per code level, one panel: songs per code value (0 .. size-1), unused values as gaps, and the mean a
    perfectly balanced codebook would have."""
    import numpy as np

    plt = _plt()
    codes = np.asarray(codes)
    levels = len(sizes)
    fig, axes = plt.subplots(1, levels, figsize=(3.2 * levels, 3.2), dpi=100, squeeze=False)
    for level, (ax, size) in enumerate(zip(axes[0], sizes)):
        counts = np.bincount(codes[:, level], minlength=size)[:size]
        used = int((counts > 0).sum())
        ax.bar(np.arange(size), counts, width=0.9, color=f"C{level}")
        ax.axhline(len(codes) / size, color="k", lw=0.8, ls="--", label="balanced")
        ax.set_title(f"level {level + 1}: {used}/{size} codes used", fontsize=9)
        ax.set_xlabel("code value")
        ax.grid(alpha=0.3)
        if level == 0:
            ax.set_ylabel("songs")
            ax.legend(fontsize=8)
    fig.suptitle(title)
    return _save(plt, fig, path)


def songs_per_code_plot(codes, path: str | Path, *, title: str = "Songs per semantic ID") -> Path:
    """How many full codes hold 1, 2, 3, ... songs (a collision is a code with 2 or more), counts printed."""
    import numpy as np

    plt = _plt()
    codes = np.asarray(codes)
    _, per_code = np.unique(codes, axis=0, return_counts=True)
    sizes, n_codes = np.unique(per_code, return_counts=True)
    fig, ax = plt.subplots(figsize=(6.5, 3.5), dpi=100)
    _label_bars(ax, ax.bar([str(int(s)) for s in sizes], n_codes, color="C0"), "{:.0f}")
    ax.set_xlabel("songs sharing one code")
    ax.set_ylabel("codes")
    ax.margins(y=0.15)
    own = float(n_codes[sizes == 1].sum()) / max(1, len(codes))
    return _finish(plt, fig, ax, path, legend=False,
                   title=f"{title}\n{len(per_code):,} codes for {len(codes):,} songs, {own:.1%} on their own code")


def markdown_image(path: str | Path, alt: str = "plot") -> str:
    """Inline a PNG into Markdown (Dagster's UI renders data URIs in Markdown metadata)."""
    import base64

    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f"![{alt}](data:image/png;base64,{data})"
