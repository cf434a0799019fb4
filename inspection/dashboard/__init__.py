"""The analyst and line dashboard: a FastAPI app on the read layer (inspection.analytics).

`create_app(DashboardConfig(...))` builds it (nothing is opened before a server starts it);
`serve(config)` runs it under uvicorn; `inspection dashboard` is the command.
"""

from .config import BindRefusedError, DashboardConfig, check_bind, is_loopback
from .server import DashboardServer, serve

__all__ = ["BindRefusedError", "DashboardConfig", "DashboardServer", "check_bind", "is_loopback", "serve"]
