"""Stage `generator`."""
