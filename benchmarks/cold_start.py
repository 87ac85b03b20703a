"""Cold-start song vectors on mpd7k: how well a song's name and singer predict its word2vec vector.

    python -m benchmarks.cold_start [--data ../shared/datasets/mpd7k] [--seed 0] [--test-share 0.1] [--quick]

The corpus is the project's: ``read_seed_folder`` + ``build_corpus`` (its default 10..300 songs a playlist) and
the crc32 split of ``corpus.split_of``. word2vec (``train_song_vectors``, the project defaults) is trained on the
train playlists; its songs are the warm songs, song names and singers come from gen_song_info.csv. The trained
vectors are cached in /tmp/genrank_bench_cache by data and parameters (``--retrain`` ignores the cache).

A test share of the warm songs (crc32, its own salt; only songs whose singer has another warm song) is put
aside. ``ColdStartVectors.fit`` runs on the rest: it holds out its own val share, scores every method and the
global-mean fallback on it (mean cosine to the trained vector; neighbour recall: the share of the song's 10
nearest warm songs by its trained vector among the 100 nearest by its predicted one), chooses on val and refits.
The chosen method is then scored once on the test share (neighbours among the non-test warm songs), beside the
fallback. The same is reported for test songs whose singer has no other warm song (``singer_unknown``).

Finally the cold songs: songs of the test playlists without a vector, split into those no train playlist holds
(no history) and those below word2vec's min_count; the share of them whose singer is known (has a warm song),
and the time to predict them all.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np

from benchmarks._common import (
    MPD7K,
    add_output_args,
    argument_parser,
    machine,
    output_path,
    parse_args,
    peak_rss_mib,
    quick_data,
    require_mpd7k,
    write_json,
)

CACHE = Path("/tmp/genrank_bench_cache")
QUICK = {"epochs": 3}
log = logging.getLogger("benchmarks.cold_start")


def load_data(data: Path):
    """(corpus, {song_id: (name, singer)}) through the project's ingest and corpus rules."""
    from genrank_assets.ml.data.corpus import build_corpus
    from genrank_assets.ml.data.ingest import read_seed_folder

    raw = read_seed_folder(data)
    corpus = build_corpus(raw.playlists, raw.playlist_songs, raw.songs).corpus
    info = dict(zip(raw.songs["song_id"].astype(str),
                    zip(raw.songs["song_name"].astype(str), raw.songs["singer"].astype(str))))
    return corpus, info


def song_vectors(corpus, params: dict, retrain: bool) -> tuple:
    """(SongVectors of the train playlists, training seconds or None when read from the cache)."""
    from genrank_assets.ml.data.corpus import as_song_lists
    from genrank_assets.ml.vectors.song_vectors import SongVectors, train_song_vectors

    sentences = as_song_lists(corpus.loc[corpus["split"] == "train", "song_ids"])
    key = hashlib.sha1(json.dumps([sentences, params], sort_keys=True).encode()).hexdigest()[:16]
    path = CACHE / f"cold_start_w2v_{key}.npz"
    if path.exists() and not retrain:
        with np.load(path, allow_pickle=False) as z:
            return SongVectors(z["song_ids"].tolist(), z["counts"], z["vectors"]), None, len(sentences)
    sv = train_song_vectors(sentences, **params)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, song_ids=np.array(sv.song_ids), counts=sv.counts, vectors=sv.vectors)
    return sv, sv.stats["training_seconds"], len(sentences)


def cold_songs(corpus, warm_ids: set[str]) -> dict:
    """The songs of the test playlists without a vector: (distinct ids, rows), and which of them no train
    playlist holds at all."""
    from genrank_assets.ml.data.corpus import as_song_lists

    train_songs = {s for p in as_song_lists(corpus.loc[corpus["split"] == "train", "song_ids"]) for s in p}
    rows = [s for p in as_song_lists(corpus.loc[corpus["split"] == "test", "song_ids"]) for s in p]
    cold_rows = [s for s in rows if s not in warm_ids]
    cold = list(dict.fromkeys(cold_rows))
    return {"test_rows": len(rows), "cold_rows": cold_rows, "cold": cold,
            "no_history": [s for s in cold if s not in train_songs]}


def share(mask) -> float | None:
    mask = np.asarray(mask, dtype=bool)
    return float(mask.mean()) if mask.size else None


def main(argv: list[str] | None = None) -> int:
    from genrank_assets.ml.vectors.song_vectors import W2V

    parser = argument_parser(__doc__, "cold_start")
    parser.add_argument("--data", type=Path, default=MPD7K)
    parser.add_argument("--seed", type=int, default=0, help="the held-out shares' and the chooser's seed")
    parser.add_argument("--val-share", type=float, default=0.1)
    parser.add_argument("--test-share", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=W2V.epochs, help="word2vec epochs (the project default)")
    parser.add_argument("--retrain", action="store_true", help="train word2vec even when the cache has it")
    add_output_args(parser, "the seeded 10%% sample of mpd7k, word2vec for 3 epochs")
    args = parse_args(parser, QUICK, argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("gensim").setLevel(logging.WARNING)
    import faiss
    import sklearn

    from genrank_assets.ml.vectors import cold_start as cs

    data = quick_data() if args.quick else require_mpd7k(args.data)
    t0 = time.perf_counter()
    corpus, info = load_data(data)
    read_s = time.perf_counter() - t0
    params = {**{k: getattr(W2V, k) for k in W2V.__dataclass_fields__}, "epochs": args.epochs}
    sv, w2v_s, n_train = song_vectors(corpus, params, args.retrain)
    print(f"corpus: {len(corpus)} playlists ({corpus['split'].value_counts().to_dict()}), read in {read_s:.1f}s; "
          f"word2vec: {len(sv)} warm songs" + (f" in {w2v_s:.0f}s" if w2v_s is not None else " (cached)"))

    ids = sv.song_ids
    names = [info.get(s, ("", ""))[0] for s in ids]
    singers = [info.get(s, ("", ""))[1] for s in ids]
    test, test_unknown = cs.held_out_split(ids, singers, args.test_share, args.seed, salt=":test")
    rest = np.flatnonzero(~(test | test_unknown))

    def pick(rows):
        return [ids[i] for i in rows], sv.vectors[rows], sv.counts[rows], [names[i] for i in rows], \
            [singers[i] for i in rows]

    r_ids, r_vectors, r_counts, r_names, r_singers = pick(rest)
    t0 = time.perf_counter()
    chooser = cs.ColdStartVectors().fit(r_ids, r_vectors, r_counts, r_names, r_singers,
                                        val_share=args.val_share, seed=args.seed)
    chooser_s = time.perf_counter() - t0
    report = chooser.report_

    # test: the chosen method, refitted on every non-test warm song, scored once; neighbours among those songs
    pool = cs.unit_rows(r_vectors)
    fallback = cs.global_mean_vector(r_vectors, r_counts)
    test_figures = {}
    for label, mask in (("test", test), ("singer_unknown", test_unknown)):
        rows = np.flatnonzero(mask)
        truth = cs.nearest(pool, cs.unit_rows(sv.vectors[rows]), chooser.k)
        t0 = time.perf_counter()
        predicted = chooser.predict([names[i] for i in rows], [singers[i] for i in rows])
        predict_s = time.perf_counter() - t0
        test_figures[label] = {
            chooser.method_: {**cs.held_out_figures(predicted, sv.vectors[rows], pool, truth, chooser.pool),
                              "predict_s": predict_s},
            cs.FALLBACK: cs.held_out_figures(np.repeat(fallback[None], len(rows), 0), sv.vectors[rows], pool, truth,
                                             chooser.pool),
        }

    # the cold songs of the test playlists; a singer is known when it has a warm song (as in production, where
    # the chooser is fitted on every warm song)
    cold = cold_songs(corpus, set(ids))
    known_singers = {cs.normalize_singer(s) for s in singers} - {""}

    def known(song_ids) -> np.ndarray:
        return np.array([cs.normalize_singer(info.get(s, ("", ""))[1]) in known_singers for s in song_ids], bool)

    t0 = time.perf_counter()
    cold_vectors = chooser.predict([info.get(s, ("", ""))[0] for s in cold["cold"]],
                                   [info.get(s, ("", ""))[1] for s in cold["cold"]])
    cold_predict_s = time.perf_counter() - t0
    cold_report = {
        "test_playlist_rows": cold["test_rows"],
        "cold_rows": len(cold["cold_rows"]),
        "cold_songs": len(cold["cold"]),
        "cold_songs_no_history": len(cold["no_history"]),
        "cold_songs_below_min_count": len(cold["cold"]) - len(cold["no_history"]),
        "cold_songs_without_song_info": int(sum(s not in info for s in cold["cold"])),
        "singer_known_share_no_history": share(known(cold["no_history"])),
        "singer_known_share_cold_songs": share(known(cold["cold"])),
        "singer_known_share_cold_rows": share(known(cold["cold_rows"])),
        "predict_s": cold_predict_s,
        "all_unit_norm": bool(np.allclose(np.linalg.norm(cold_vectors, axis=1), 1, atol=1e-4)),
    }

    print(f"\nval (n={report['n_val']} held out of {report['n_warm']} warm songs; fitted on {report['n_fit']}):")
    print(f"{'method':<14} {'mean cos':>9} {'nbr recall':>11} {'fit s':>7} {'predict s':>9}")
    for name, row in {cs.FALLBACK: report["fallback"], **report["methods"]}.items():
        sec = chooser.seconds_.get(name, {})
        print(f"{name:<14} {row['mean_cosine']:>9.4f} {row['neighbour_recall']:>11.4f} "
              f"{sec.get('fit_s', 0):>7.2f} {sec.get('predict_s', 0):>9.2f}")
    print(f"chosen: {chooser.method_}")
    for label, rows in test_figures.items():
        for name, row in rows.items():
            print(f"{label} (n={row['n']}) {name}: mean cosine {row['mean_cosine']:.4f}, "
                  f"neighbour recall {row['neighbour_recall']:.4f}")
    print(f"cold songs of the test playlists: {cold_report['cold_songs']} ({cold_report['cold_songs_no_history']} "
          f"with no train history); singer known for {cold_report['singer_known_share_no_history']:.1%} of those "
          f"without history, {cold_report['singer_known_share_cold_rows']:.1%} of the cold rows")

    write_json(output_path(args, "cold_start"), {
        "dataset": str(data),
        "quick": args.quick,
        "protocol": __doc__.split("\n\n", 2)[2].strip(),
        "corpus": {"playlists": len(corpus), "split_counts": corpus["split"].value_counts().to_dict(),
                   "train_playlists": n_train, "read_s": read_s},
        "word2vec": {"params": params, "warm_songs": len(sv), "training_s": w2v_s, "cached": w2v_s is None},
        "chooser": {"rule": report["rule"], "chosen": chooser.method_, "fit_s_total": chooser_s,
                    "seconds": chooser.seconds_, "params": chooser.get_params()},
        "val": {k: report[k] for k in ("methods", "fallback", "singer_unknown", "n_warm", "n_fit", "n_val",
                                       "n_singer_unknown", "val_share", "k", "pool")},
        "test": {"share": args.test_share, "salt": ":test", "seed": args.seed, "n_warm_not_test": len(rest),
                 **test_figures},
        "cold": cold_report,
        "machine": machine(numpy=np.__version__, sklearn=sklearn.__version__, faiss=faiss.__version__),
        "peak_rss_mib": peak_rss_mib(),
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
