"""Stage `serving`."""
