"""Stage `semantic_ids`."""
