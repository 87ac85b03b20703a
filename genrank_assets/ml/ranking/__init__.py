"""Stage `ranking`."""
