"""The plots put each bar where its label is, print the values they show, and draw what the data holds."""
import numpy as np
import pytest

from genrank_assets.ml import plots


@pytest.fixture()
def drawn(monkeypatch):
    """The Axes of the plots drawn in a test (captured just before they are saved)."""
    axes = []
    finish = plots._finish

    def keep(plt, fig, ax, path, **kw):
        axes.append(ax)
        return finish(plt, fig, ax, path, **kw)

    monkeypatch.setattr(plots, "_finish", keep)
    return axes


def _bars(ax):
    return [p for p in ax.patches if p.get_width() > 0 and p.get_height() >= 0]


def test_grouped_bars_sit_on_their_group_and_print_their_values(tmp_path, drawn):
    groups = {"generate_and_rank": {"generate": 11.0, "rank": 8.0, "whole": 20.0},
              "generate_and_rank_hybrid": {"generate": 11.5, "classical": 0.9, "rank": 12.0, "whole": 26.0},
              "title_knn": {"whole": 0.6}}
    path = plots.grouped_bar_plot(groups, tmp_path / "g.png", title="t", ylabel="ms", fmt="{:.1f}",
                                  series_order=["generate", "classical"])
    assert path.stat().st_size > 1000
    ax = drawn[0]
    ticks = {t.get_text(): x for t, x in zip(ax.get_xticklabels(), ax.get_xticks())}
    assert [t.replace("\n", "") for t in ticks] == list(groups)  # one tick per group, in order, unrotated
    ticks = {t.replace("\n", ""): x for t, x in ticks.items()}
    assert all(t.get_rotation() == 0 for t in ax.get_xticklabels())
    bars = _bars(ax)
    assert len(bars) == sum(len(v) for v in groups.values())  # one bar per stage per method, none extra
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["generate", "classical", "rank", "whole"]  # series_order first, then as they come
    # Every bar is inside its group's slot, and its value is printed at its top.
    texts = {(round(t.xy[0], 6), t.get_text()) for t in ax.texts}
    for container, series in zip(ax.containers, legend):
        owners = [g for g in groups if series in groups[g]]
        for bar, group in zip(container, owners):
            centre = bar.get_x() + bar.get_width() / 2
            assert abs(centre - ticks[group]) < 0.45
            assert bar.get_height() == groups[group][series]
            assert (round(centre, 6), f"{groups[group][series]:.1f}") in texts
    # A group with one bar has it centred on its tick.
    knn_bar = ax.containers[legend.index("whole")][2]
    assert knn_bar.get_x() + knn_bar.get_width() / 2 == pytest.approx(ticks["title_knn"])


def test_interval_bars_hold_value_and_interval(tmp_path, drawn):
    values = {"popularity": (0.10, 0.09, 0.12), "system": (0.60, 0.55, 0.64)}
    plots.interval_bar_plot(values, tmp_path / "i.png", title="t", xlabel="NDCG@10", highlight=["system"])
    ax = drawn[0]
    widths = sorted(round(b.get_width(), 6) for b in _bars(ax))
    assert widths == [0.10, 0.60]
    assert {t.get_text() for t in ax.texts} == {"0.100", "0.600"}
    y = {t.get_text(): pos for t, pos in zip(ax.get_yticklabels(), ax.get_yticks())}
    assert y["popularity"] > y["system"]  # the first name on top, as in the report's table


def test_code_usage_and_songs_per_code(tmp_path, drawn):
    rng = np.random.default_rng(0)
    codes = np.stack([rng.integers(0, 4, 200), rng.integers(0, 3, 200), rng.integers(0, 2, 200)], axis=1)
    codes[:, 0] = np.where(codes[:, 0] == 3, 2, codes[:, 0])  # level-1 code 3 unused
    usage = plots.code_usage_plot(codes, [4, 3, 2], tmp_path / "usage.png")
    assert usage.stat().st_size > 1000
    per_code = plots.songs_per_code_plot(codes, tmp_path / "per_code.png")
    assert per_code.stat().st_size > 1000
    ax = drawn[-1]
    _, counts = np.unique(codes, axis=0, return_counts=True)
    assert sum(b.get_height() for b in _bars(ax)) == len(counts)  # every distinct code counted once
    assert f"{len(counts):,} codes for 200 songs" in ax.get_title()


def test_long_names_wrap_after_underscores():
    assert plots.wrap_label("generate_and_rank_hybrid") == "generate_and_rank_\nhybrid"
    assert plots.wrap_label("title_knn") == "title_knn"


def test_markdown_image_inlines_the_png(tmp_path):
    png = plots.bar_plot({"a": 1.0}, tmp_path / "b.png", title="t", ylabel="y")
    md = plots.markdown_image(png, "alt")
    assert md.startswith("![alt](data:image/png;base64,iVBOR")
