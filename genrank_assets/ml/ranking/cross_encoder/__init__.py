"""The cross-encoder: (title, song vector) -> relevance logit, its training examples and its training loop."""
