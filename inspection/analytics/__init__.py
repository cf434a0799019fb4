"""The one read layer: the dashboard, the edge's gauges, the notebooks, the tools and the tests read results here;
the store (`inspection.store.ResultStore`) only writes.

One SQL style for reads: named text queries (`queries`, one `Query` each, one module per page). Why text and
not SQLAlchemy Core: the analysts read, copy and run these statements (notebooks, psql), Grafana's panels
share their car-state expression, and the few dialect-specific ones (time bins, PostgreSQL's LATERAL) are
clearer written out; every one runs on freshly migrated SQLite and PostgreSQL in the tests. Core stays
for writes and for the reads inside a write transaction (store/, rules/verdict.py, signal/outbox.py,
review/store.py's `submit_review`, review/shadow.py's `ShadowStore`). The review loop reads through
`queries.review`. Not moved yet: bench_e2e's timing probes (tools/bench_e2e.py) are still Core.

- `queries`: every statement (portable SQLite/PostgreSQL, bound parameters only);
- `reader.AnalyticsReader` (+ `detections.DetectionReads`): typed answers (pydantic models in `models`);
- `binning`: the line charts' time bins; `rollup`: boxes per minute and class kept in memory;
- `db.open_readonly_engine`: an engine that cannot write;
- `grafana`: the Grafana dashboard's panels (PostgreSQL SQL with Grafana macros).
"""

from .db import DatabaseMissingError, open_readonly_engine
from .models import DetectionFilter
from .reader import AnalyticsReader, NotFoundError

__all__ = ["AnalyticsReader", "DatabaseMissingError", "DetectionFilter", "NotFoundError", "open_readonly_engine"]
