"""Synthetic seed-format data: determinism, exact format, malformed rows of every kind, planted themes."""
from __future__ import annotations

import gzip
import json
import os
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest

from genrank_assets.ml.data import demo_data as dd
from genrank_assets.ml.data.demo_data import (
    FILES,
    MALFORMED_KINDS,
    PLAYLIST_INFO_FILE,
    PLAYLIST_INFO_HEADER,
    PLAYLIST_SONG_FILE,
    SONG_INFO_FILE,
    generate_demo_data,
    playlist_plan,
    playlist_themes,
    song_catalog,
    song_themes,
)
from genrank_assets.ml.data.demo_words import THEMES

N_PLAYLISTS, N_SONGS, SEED = 300, 600, 7


def _read(folder: Path, suffix: str = "") -> dict[str, bytes]:
    return {name: (folder / f"{name}{suffix}").read_bytes() for name in FILES}


def _lines(data: bytes) -> list[bytes]:
    assert data.endswith(b"\n"), "every line, the last included, ends with a newline"
    return data[:-1].split(b"\n")


def _classify(files: dict[str, bytes]) -> tuple[dict[str, dict[str, int]], dict[str, list]]:
    """An independent reader of the format: reject counts per file and reason, and the well-formed rows.

    Checks run in the order of the ingest: bytes, column count, empty ids, numbers, duplicates, orphans.
    """
    rejects: dict[str, dict[str, int]] = {name: defaultdict(int) for name in FILES}
    good: dict[str, list] = {name: [] for name in FILES}

    def decoded(name: str, line: bytes) -> list[str] | None:
        try:
            return line.decode("utf-8").split("\t")
        except UnicodeDecodeError:
            rejects[name]["undecodable_bytes"] += 1
            return None

    info_lines = _lines(files[PLAYLIST_INFO_FILE])
    assert info_lines[0].decode("utf-8") == "\t".join(PLAYLIST_INFO_HEADER)
    seen: set[str] = set()
    for line in info_lines[1:]:
        cols = decoded(PLAYLIST_INFO_FILE, line)
        if cols is None:
            continue
        if len(cols) != len(PLAYLIST_INFO_HEADER):
            rejects[PLAYLIST_INFO_FILE]["wrong_column_count"] += 1
        elif not cols[0].strip() or not cols[1].strip():
            rejects[PLAYLIST_INFO_FILE]["empty_id"] += 1
        elif not all(c.isdigit() for c in cols[4:]):
            rejects[PLAYLIST_INFO_FILE]["non_numeric_field"] += 1
        elif cols[0] in seen:
            rejects[PLAYLIST_INFO_FILE]["duplicate_info_row"] += 1
        else:
            seen.add(cols[0])
            good[PLAYLIST_INFO_FILE].append(cols)

    seen_songs: set[str] = set()
    for line in _lines(files[SONG_INFO_FILE]):
        cols = decoded(SONG_INFO_FILE, line)
        if cols is None:
            continue
        if len(cols) < 3:  # extra trailing columns are allowed
            rejects[SONG_INFO_FILE]["wrong_column_count"] += 1
        elif not cols[0].strip():
            rejects[SONG_INFO_FILE]["empty_id"] += 1
        elif cols[0] in seen_songs:
            rejects[SONG_INFO_FILE]["duplicate_info_row"] += 1
        else:
            seen_songs.add(cols[0])
            good[SONG_INFO_FILE].append(cols)

    for line in _lines(files[PLAYLIST_SONG_FILE]):
        cols = decoded(PLAYLIST_SONG_FILE, line)
        if cols is None:
            continue
        if len(cols) != 2:
            rejects[PLAYLIST_SONG_FILE]["wrong_column_count"] += 1
        elif not cols[0].strip() or not cols[1].strip():
            rejects[PLAYLIST_SONG_FILE]["empty_id"] += 1
        elif cols[0] not in seen:
            rejects[PLAYLIST_SONG_FILE]["orphan_song_row"] += 1
        else:
            good[PLAYLIST_SONG_FILE].append(cols)
    return {name: dict(v) for name, v in rejects.items()}, good


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo")
    stats = generate_demo_data(out, N_PLAYLISTS, N_SONGS, seed=SEED)
    return out, stats


def _comparable(stats: dict) -> dict:
    return {k: v for k, v in stats.items() if k not in ("seconds", "files")}


def test_same_seed_gives_identical_bytes_and_another_seed_differs(small, tmp_path):
    out, stats = small
    again = generate_demo_data(tmp_path / "again", N_PLAYLISTS, N_SONGS, seed=SEED)
    other = generate_demo_data(tmp_path / "other", N_PLAYLISTS, N_SONGS, seed=SEED + 1)
    assert _read(tmp_path / "again") == _read(out)
    assert _comparable(again) == _comparable(stats)
    other_files = _read(tmp_path / "other")
    for name in FILES:
        assert other_files[name] != _read(out)[name], name
    assert _comparable(other) != _comparable(stats)


def test_files_follow_the_seed_format(small):
    out, stats = small
    files = _read(out)
    _, good = _classify(files)
    info, songs, rows = good[PLAYLIST_INFO_FILE], good[SONG_INFO_FILE], good[PLAYLIST_SONG_FILE]
    assert len(info) == stats["playlists"] == N_PLAYLISTS
    assert len(songs) == stats["songs"] == N_SONGS
    assert len(rows) == stats["playlist_song_rows"]
    assert sum(len(_lines(files[name])) for name in FILES) == sum(stats["lines"].values())
    assert any(len(cols) > 3 for cols in songs), "some song rows carry an allowed extra column"
    assert all(cols[1].strip() for cols in info), "every well-formed playlist has a title"
    assert any(cols[3] == "" for cols in info) and any("," in cols[3] for cols in info), "tags: empty and lists"

    # Rows are grouped by playlist (every playlist one contiguous run, orphans included), in byte order of ids.
    runs = []
    for line in _lines(files[PLAYLIST_SONG_FILE]):
        cols = line.decode("utf-8", "replace").split("\t")
        if len(cols) >= 2 and cols[0] and (not runs or runs[-1] != cols[0]):
            runs.append(cols[0])
    assert len(runs) == len(set(runs)), "a playlist's rows are not contiguous"
    info_ids = [cols[0] for cols in info]
    well_formed_runs = [pid for pid in runs if pid in set(info_ids)]
    assert well_formed_runs == sorted(info_ids), "every playlist has rows, in byte order of its id"

    # Every song of a well-formed row is in the song file.
    song_ids = {cols[0] for cols in songs}
    assert {sid for _, sid in rows} <= song_ids

    # Ids are strings: a few ids are another id with leading zeros, and both stay distinct everywhere.
    twins = [pid for pid in info_ids if pid.startswith("0") and pid.lstrip("0") in set(info_ids)]
    assert len(twins) >= 2 and stats["leading_zero_ids"] == len(twins)
    row_ids = {pid for pid, _ in rows}
    for pid in twins:
        assert pid in row_ids and pid.lstrip("0") in row_ids


def test_malformed_rows_of_every_kind_match_the_stats(small):
    out, stats = small
    rejects, good = _classify(_read(out))
    assert rejects == stats["malformed"]
    for name, kinds in MALFORMED_KINDS.items():
        assert set(rejects[name]) == set(kinds), name
        assert all(count >= 1 for count in rejects[name].values()), name
    # The playlist-song file is large enough for its rate to be close to the requested one.
    rows = len(good[PLAYLIST_SONG_FILE])
    assert 0.015 <= sum(rejects[PLAYLIST_SONG_FILE].values()) / rows <= 0.025
    assert stats["malformed_rows"] == sum(sum(v.values()) for v in rejects.values())


@pytest.mark.parametrize("rate", [0.1, 0.3])
def test_malformed_share_follows_the_requested_rate(tmp_path, rate):
    stats = generate_demo_data(tmp_path, N_PLAYLISTS, N_SONGS, seed=SEED, malformed_rate=rate)
    rejects, good = _classify(_read(tmp_path))
    assert rejects == stats["malformed"]
    for name in FILES:
        share = sum(rejects[name].values()) / len(good[name])
        assert 0.8 * rate <= share <= 1.2 * rate, (name, share)


def test_malformed_rows_are_only_additions(small, tmp_path):
    out, _ = small
    clean = generate_demo_data(tmp_path, N_PLAYLISTS, N_SONGS, seed=SEED, malformed_rate=0.0)
    clean_rejects, clean_good = _classify(_read(tmp_path))
    assert all(not kinds for kinds in clean_rejects.values())
    assert clean["malformed_rows"] == 0
    _, dirty_good = _classify(_read(out))
    assert clean_good == dirty_good


def test_ingest_reads_demo_data_with_the_same_reject_counts(small):
    from genrank_assets.ml.data.ingest import REASONS, read_seed_folder

    out, stats = small
    assert {k for kinds in MALFORMED_KINDS.values() for k in kinds} <= set(REASONS)
    raw = read_seed_folder(out)
    assert len(raw.playlists) == N_PLAYLISTS and len(raw.songs) == N_SONGS
    assert len(raw.playlist_songs) == stats["playlist_song_rows"]
    got = raw.rejects.groupby(["file", "reason"]).size().to_dict()
    want = {(f, r): n for f, kinds in stats["malformed"].items() for r, n in kinds.items()}
    assert got == want
    assert {"0" + pid for pid in raw.playlists["playlist_id"]} & set(raw.playlists["playlist_id"]), (
        "leading-zero ids survive ingest as distinct strings"
    )


def test_gzip_output_equals_the_plain_output(small, tmp_path):
    out, stats = small
    gz_stats = generate_demo_data(tmp_path / "a", N_PLAYLISTS, N_SONGS, seed=SEED, compress=True)
    generate_demo_data(tmp_path / "b", N_PLAYLISTS, N_SONGS, seed=SEED, compress=True)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(f"{name}.gz" for name in FILES)
    compressed = _read(tmp_path / "a", ".gz")
    assert compressed == _read(tmp_path / "b", ".gz"), "gzip bytes are reproducible"
    plain = _read(out)
    for name in FILES:
        # gzip header: magic, then flags 0 (no file name stored) and mtime 0, so bytes do not depend on the clock.
        assert compressed[name][:2] == b"\x1f\x8b"
        assert compressed[name][3] == 0 and compressed[name][4:8] == b"\x00\x00\x00\x00"
        assert gzip.decompress(compressed[name]) == plain[name], name
    assert _comparable(gz_stats) == _comparable(stats)


def test_playlists_mostly_hold_songs_of_their_themes(tmp_path):
    generate_demo_data(tmp_path, N_PLAYLISTS, 2 * N_SONGS, seed=SEED)
    _, good = _classify(_read(tmp_path))
    themes_of_playlist = playlist_themes(N_PLAYLISTS, SEED)
    themes_of_song = song_themes(2 * N_SONGS, SEED)
    rows: dict[str, list[str]] = defaultdict(list)
    for pid, sid in good[PLAYLIST_SONG_FILE]:
        rows[pid].append(sid)
    pids = sorted(rows)
    assert set(pids) == set(themes_of_playlist)

    def on_theme_share(assignment: list[str]) -> float:
        return float(np.mean([
            np.mean([bool(set(themes_of_song[s]) & set(themes_of_playlist[owner])) for s in rows[pid]])
            for pid, owner in zip(pids, assignment)
        ]))

    planted = on_theme_share(pids)
    shuffled = on_theme_share(list(np.random.default_rng(0).permutation(pids)))
    assert planted >= 0.7, planted
    assert shuffled <= 0.2, shuffled

    # Titles carry words of their own themes far more often than words of other themes.
    titles = {cols[0]: cols[1].lower() for cols in good[PLAYLIST_INFO_FILE]}

    def said(pid: str, theme: dict) -> bool:
        return any(w.lower() in titles[pid] for w in theme["zh"] + theme["en"])

    by_name = {t["name"]: t for t in THEMES}
    own = np.mean([any(said(p, by_name[t]) for t in themes_of_playlist[p]) for p in pids])
    other = np.mean([
        np.mean([said(p, t) for t in THEMES if t["name"] not in themes_of_playlist[p]]) for p in pids
    ])
    assert own >= 0.85 and other <= 0.02, (own, other)

    # Popularity is skewed: the 10% most-played songs hold well over 10% of the rows.
    counts = np.sort(np.bincount(np.unique([s for _, s in good[PLAYLIST_SONG_FILE]], return_inverse=True)[1]))
    assert counts[-len(counts) // 10:].sum() / counts.sum() >= 0.3

    # Lengths: mostly 10-80, a few short ones.
    lengths = np.array([len(rows[p]) for p in pids])
    assert ((lengths >= 10) & (lengths <= 80)).mean() >= 0.8 and (lengths < 10).any()


def test_helpers_recompute_the_written_catalogue(small):
    out, _ = small
    _, good = _classify(_read(out))
    cat = song_catalog(N_SONGS, SEED)
    written = {cols[0]: (cols[1], cols[2]) for cols in good[SONG_INFO_FILE]}
    assert written == {s: (n, a) for s, n, a in zip(cat.song_ids, cat.names, cat.singers)}
    assert set(song_themes(N_SONGS, SEED)) == set(written)
    plan = playlist_plan(N_PLAYLISTS, SEED)
    assert [cols[0] for cols in good[PLAYLIST_INFO_FILE]] == list(plan.playlist_ids)
    assert (plan.themes[:, 0] >= 0).all() and (plan.themes[:, 0] != plan.themes[:, 1]).all()
    assert len(THEMES) >= 40 and len({t["name"] for t in THEMES}) == len(THEMES)
    for theme in THEMES:
        assert theme["zh"] and theme["en"] and theme["tag"]
        for word in theme["zh"] + theme["en"]:
            assert "\t" not in word and "\n" not in word and word.strip() == word


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n_playlists": 0}, "n_playlists"),
        ({"n_songs": 5}, "n_songs"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"malformed_rate": 0.9}, "malformed_rate"),
        ({"compress": "yes"}, "compress"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(tmp_path, kwargs, field):
    with pytest.raises(ValueError, match=field):
        generate_demo_data(tmp_path, **{"n_playlists": 10, "n_songs": 100, **kwargs})


def test_main_writes_gzip_files_and_prints_stats(tmp_path, capsys):
    assert dd.main(["--out", str(tmp_path), "--playlists", "40", "--songs", "100", "--seed", "3",
                    "--malformed-rate", "0.05", "--gzip"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["playlists"] == 40 and stats["songs"] == 100
    for name in FILES:
        assert (tmp_path / f"{name}.gz").is_file()
    rejects, _ = _classify({name: gzip.decompress((tmp_path / f"{name}.gz").read_bytes()) for name in FILES})
    assert rejects == stats["malformed"]


def test_small_chunks_keep_the_format_and_the_counts(tmp_path, monkeypatch):
    # Streaming works chunk by chunk: duplicates and malformed rows must cross chunk borders correctly.
    monkeypatch.setattr(dd, "CHUNK_PLAYLISTS", 16)
    stats = generate_demo_data(tmp_path, N_PLAYLISTS, N_SONGS, seed=SEED, malformed_rate=0.1)
    files = _read(tmp_path)
    rejects, good = _classify(files)
    assert rejects == stats["malformed"]
    assert len(good[PLAYLIST_INFO_FILE]) == N_PLAYLISTS and len(good[SONG_INFO_FILE]) == N_SONGS
    assert len(good[PLAYLIST_SONG_FILE]) == stats["playlist_song_rows"]
    runs = [pid for i, (pid, _) in enumerate(good[PLAYLIST_SONG_FILE])
            if i == 0 or good[PLAYLIST_SONG_FILE][i - 1][0] != pid]
    assert runs == sorted(cols[0] for cols in good[PLAYLIST_INFO_FILE])
