"""Stage `data`."""
