"""Plain Python / torch algorithms of genrank. Nothing in this package imports Dagster."""
