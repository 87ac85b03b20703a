"""Stage `vectors`."""
