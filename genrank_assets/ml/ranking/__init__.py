"""Stage `ranking`: the cross-encoder (`cross_encoder/`) and learning to rank over each query's candidate pool (`ltr/`)."""
