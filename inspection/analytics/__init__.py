"""The analyst read layer: one SQL source for the dashboard, the notebooks and the Grafana panels.

- `queries`: every SQL statement (portable SQLite/PostgreSQL, bound parameters only);
- `reader.AnalyticsReader`: typed answers (pydantic models in `models`) built on those queries;
- `db.open_readonly_engine`: an engine that cannot write;
- `grafana`: the Grafana dashboard's panels (PostgreSQL SQL with Grafana macros).
"""

from .db import DatabaseMissingError, open_readonly_engine
from .models import DetectionFilter
from .reader import AnalyticsReader, NotFoundError

__all__ = ["AnalyticsReader", "DatabaseMissingError", "DetectionFilter", "NotFoundError", "open_readonly_engine"]
