"""`python -m inspection.cli ...` (what the supervisor and the benchmarks start)."""

from . import app

app()
