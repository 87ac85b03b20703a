"""Stage `catalogue`: the songs that can be recommended, cold-start songs placed under semantic IDs."""
