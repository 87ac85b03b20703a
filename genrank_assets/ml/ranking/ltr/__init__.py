"""Learning to rank: candidate pools from every source, their features, and the LightGBM lambdarank ranker."""
