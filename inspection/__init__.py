"""inspection: streaming edge inspection pipeline (ingest -> tile -> detect -> stitch -> store)."""

__version__ = "0.1.0"
