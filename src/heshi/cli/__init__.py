"""Command line: one Typer sub-app per command group."""
