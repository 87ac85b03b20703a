"""Classical recommenders (popularity, title-kNN, kernel ridge, co-occurrence): the evaluation's baselines and the candidate pool's sources."""
