"""Stage `evaluation`."""
