"""genrank's benchmarks, one module per measurement, each run from the repository root as
``python -m benchmarks.<name>`` (``--help`` for its options, ``--quick`` for a size that finishes in minutes on
2 cores). ``python -m benchmarks`` (``make bench``, ``make bench QUICK=1``) runs them all in order.

- ``ingest``: ingest + corpus throughput and peak memory (mpd7k and a generated set).
- ``baselines``: docs/benchmark.md's classical rows on mpd7k, reproduced and timed.
- ``semantic_ids``: RQ-KMeans against faiss's residual quantizer and plain residual k-means.
- ``cold_start``: cold-start song vectors (singer mean, text ridge, blend) on held-out warm songs of mpd7k.
- ``end_to_end``: the whole graph on mpd7k (cpu-real preset), wall time and peak memory per asset, the report.
- ``generator``: the registered TIGER generator (throughput, latency, candidate quality) and the cost of the
  trie-constrained decoding (a fresh tiny T5, random codes).
- ``ranker``: the registered cross-encoder's reranking and its cost, and the scoring / training cost of the
  cross-encoder presets.
- ``compare``: the paired A/B of two homes (or of a preset and a variant of it) on val: the LTR ranker's
  out-of-fold NDCG@10, paired bootstrap CI; test is never read.
- ``scaling``: the whole graph at scale factors of mpd7k, growth exponents per asset.
- ``freshness``: a base plus three landed batches, each refreshed, against one full retrain on the same data.
- ``named_singer``: queries that name a singer ("songs like <singer>", "类似<singer>的歌曲") against the served LTR
  system with and without its mention source: the share of the top 10 by that singer or its co-occurring ones,
  and NDCG@10 on ordinary titles (paired CI).
- ``serving_cost``: per-query cost of the classical sources and of the LTR pool's classical part, the old dense
  rows against the evidence path, on mpd7k and a 3x catalogue (p50 / p95 ms, ratio 3x / 1x).
- ``gpu_check``: the gpu-seed preset's training on a CUDA GPU per mixed-precision path (nothing without CUDA).

Results: ``benchmarks/results/<name>.json`` (the latest full run of each); experiment records the docs cite in
``benchmarks/results/experiments/``; ``--quick`` runs write under ``benchmarks/.cache/quick/`` (git-ignored).
"""
