"""Operator tools over the code location: the `genrank` CLI, the quiet demo runner, the UI server, the team stack
and the graph writer (docs/architecture.md)."""
