"""The dashboard's FastAPI application: `create_app(config)`; nothing happens at import.

The database engine (read-only), the image store and the thumbnail cache are opened in the
lifespan, when a server starts the app. Two ASGI middlewares wrap every request, static files and
/docs included: the token check (when a token is configured) and a `Server-Timing` header with
the time the app spent. Pages carry a Content-Security-Policy that allows scripts of this origin
only: even text that escaped escaping could not run.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from ..analytics import AnalyticsReader, NotFoundError, open_readonly_engine
from ..store.db import create_engine_for
from ..store.images import ImageStore
from .config import DashboardConfig
from .routers import cars, detections, frames, line, problems, review
from .templating import templates
from .thumbnails import ThumbnailCache

PACKAGE = Path(__file__).resolve().parent
TOKEN_COOKIE = "inspection_token"
TOKEN_HEADER = "x-inspection-token"
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
DOCS_CSP = PAGE_CSP.replace("script-src 'self'", "script-src 'self' 'unsafe-inline'")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def create_app(config: DashboardConfig) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = open_readonly_engine(config.db_url)
        app.state.reader = AnalyticsReader(engine, cameras=config.cameras)
        images = config.images_dir
        app.state.images = ImageStore(images) if images is not None and Path(images).is_dir() else None
        app.state.thumbs = ThumbnailCache(config.thumbs)
        # The review routes' own engine, the only one that writes (review tables only); none without reviewers.
        writer = create_engine_for(config.db_url) if config.reviewers else None
        app.state.review_writer = writer
        try:
            yield
        finally:
            engine.dispose()
            if writer is not None:
                writer.dispose()

    app = FastAPI(
        title="inspection dashboard",
        description="Read-only views of the inspection results database: line, cars, frames, detections, problems.",
        version="1",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.config = config
    for router in (line.router, cars.router, frames.router, detections.router, problems.router, review.router):
        app.include_router(router)
    _mount_swagger(app)  # before /static, which would shadow /static/swagger
    app.mount("/static", StaticFiles(directory=PACKAGE / "static"), name="static")

    @app.exception_handler(NotFoundError)
    async def _not_found(request: Request, exc: NotFoundError) -> Any:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": str(exc)}, status_code=404)
        return templates.TemplateResponse(request, "error.html", {"status": 404, "message": str(exc)}, status_code=404)

    app.add_middleware(SecurityHeaders)
    app.add_middleware(ServerTiming)
    if config.token:
        app.add_middleware(TokenCheck, token=config.token)
    return app


def _mount_swagger(app: FastAPI) -> None:
    """OpenAPI at /docs with Swagger UI from the swagger-ui-bundle package: no CDN."""
    import swagger_ui_bundle

    app.mount("/static/swagger", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="swagger")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="inspection dashboard API",
            swagger_js_url="/static/swagger/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger/swagger-ui.css",
            swagger_favicon_url="/static/swagger/favicon-32x32.png",
        )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


class TokenCheck:
    """Every request presents the token: `Authorization: Bearer T`, `X-Inspection-Token: T`, the
    cookie set after a first `?token=T`, or `?token=T` itself (answered by a redirect that sets the
    cookie and drops the token from the address bar)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    def _ok(self, candidate: str | None) -> bool:
        return candidate is not None and secrets.compare_digest(candidate.encode(), self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        authorization = _header(scope, b"authorization") or ""
        bearer = authorization[7:] if authorization.lower().startswith("bearer ") else None
        cookie = SimpleCookie(_header(scope, b"cookie") or "").get(TOKEN_COOKIE)
        if self._ok(bearer) or self._ok(_header(scope, TOKEN_HEADER.encode())) or self._ok(cookie.value if cookie else None):
            await self.app(scope, receive, send)
            return
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        given = [v for k, v in query if k == "token"]
        if given and self._ok(given[-1]):
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            response: Any = RedirectResponse(scope["path"] + (f"?{rest}" if rest else ""), status_code=303)
            response.set_cookie(TOKEN_COOKIE, self.token.decode(), httponly=True, samesite="strict")
        elif scope["path"].startswith("/api/") or scope["path"] == "/openapi.json":
            response = JSONResponse(
                {"detail": "missing or wrong token: send Authorization: Bearer <token>"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        else:
            response = HTMLResponse(
                "<!doctype html><title>token required</title><h1>401: token required</h1>"
                "<p>This dashboard needs its token: open it once as <code>/?token=&lt;token&gt;</code>.</p>",
                status_code=401,
            )
        await response(scope, receive, send)


class ServerTiming:
    """`Server-Timing: app;dur=<ms>`: the app's time up to the response headers (what benchmarks read)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                duration_ms = (time.perf_counter() - started) * 1000
                message["headers"] = [*message.get("headers", []), (b"server-timing", f"app;dur={duration_ms:.2f}".encode())]
            await send(message)

        await self.app(scope, receive, timed_send)


class SecurityHeaders:
    """Content-Security-Policy, no MIME sniffing, no framing, no referrer leaving the page."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = DOCS_CSP if scope["path"] == "/docs" else PAGE_CSP

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"content-security-policy", csp.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                ]
            await send(message)

        await self.app(scope, receive, with_headers)
