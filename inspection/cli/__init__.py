"""The `inspection` command: demo, broker, produce, edge, eval, bench, plan, dashboard, model, db.

One module per command group; each command parses its arguments, calls one function of the
runtime or of `inspection.tools`, and renders the answer. Failures are raised, never printed by
hand: `base._errors` renders each as one `error:` line with its exit code (`errors.CliError`).
"""

# The modules register their commands on `app` in this order: the order of `inspection --help`.
# isort: off
from .base import app
from . import demo, line, evaluation, bench, dashboard, model, db  # noqa: F401
from .bench import bench_table, plan_table
from .demo import demo_table

# isort: on

__all__ = ["app", "bench_table", "demo_table", "plan_table"]
