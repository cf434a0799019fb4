"""The analyst's review: the queue, a frame to review, and the one write of the dashboard.

Reads go through the read-only engine like every other page. `POST /api/review/frames/{id}` is the
only route that writes: it needs a reviewer token in the `X-Review-Token` header (on every host,
loopback included) and writes through the separate writer engine, into the review tables only.
A header is the CSRF defence: a cross-site form or image cannot set one, and a cross-site
`fetch` with it needs a CORS preflight this app never grants; the token is not a cookie, so the
browser never sends it on its own.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import Engine

from ...analytics import AnalyticsReader
from ...review.compare import Comparison, compare, shadow_models
from ...review.models import QueueItem, QueueName, ReviewFrame, ReviewIn, ReviewOut, ReviewQueue
from ...review.scoring import ReviewedScore, weekly
from ...review.store import ReviewNotFoundError, ReviewRefusedError, next_frame, review_frame, review_queue, submit_review
from ..config import DashboardConfig
from ..deps import get_config, get_reader
from ..templating import templates

router = APIRouter(tags=["review"])
REVIEW_HEADER = "X-Review-Token"


def require_reviewer(request: Request, x_review_token: str | None = Header(None, description="the reviewer's token")) -> str:
    config: DashboardConfig = request.app.state.config
    if not config.reviewers:
        raise HTTPException(403, "reviewing is off on this dashboard: start it with reviewers (INSPECTION_REVIEWERS)")
    reviewer = config.reviewers.identify(x_review_token)
    if reviewer is None:
        raise HTTPException(401, f"missing or unknown reviewer token: send it in the {REVIEW_HEADER} header")
    return reviewer


def get_review_writer(request: Request) -> Engine:
    writer = request.app.state.review_writer
    if writer is None:
        raise HTTPException(403, "reviewing is off on this dashboard")
    return writer


def _size(config: DashboardConfig) -> tuple[int, int]:
    return config.grid.frame_width, config.grid.frame_height


@router.get("/api/review/queue", response_model=ReviewQueue, summary="unreviewed frames: NG cars, near the threshold, OK sample")
def api_queue(
    exclude: int | None = None, reader: AnalyticsReader = Depends(get_reader), config: DashboardConfig = Depends(get_config)
) -> ReviewQueue:
    with reader.engine.connect() as conn:
        return review_queue(conn, config.review, config.score_threshold, exclude=exclude)


@router.get(
    "/api/review/next",
    response_model=QueueItem | None,
    summary="the frame to review after frame `after` of bucket `queue` (keyset), else the queue's head; null when none is left",
)
def api_next(
    after: int,
    queue: QueueName = "direct",
    reader: AnalyticsReader = Depends(get_reader),
    config: DashboardConfig = Depends(get_config),
) -> QueueItem | None:
    with reader.engine.connect() as conn:
        return next_frame(conn, config.review, config.score_threshold, after=after, queue=queue)


@router.get("/api/review/frames/{frame_id}", response_model=ReviewFrame, summary="a frame's boxes with ids and its latest review")
def api_review_frame(
    frame_id: int, reader: AnalyticsReader = Depends(get_reader), config: DashboardConfig = Depends(get_config)
) -> ReviewFrame:
    try:
        with reader.engine.connect() as conn:
            return review_frame(conn, frame_id, config.score_threshold, _size(config))
    except ReviewNotFoundError as exc:
        raise HTTPException(404, str(exc)) from None


@router.get("/api/review/me", summary="the reviewer a token belongs to (401 if none)")
def api_me(reviewer: str = Depends(require_reviewer)) -> dict[str, str]:
    return {"reviewer": reviewer}


@router.post(
    "/api/review/frames/{frame_id}",
    response_model=ReviewOut,
    status_code=201,
    summary="store a review of a frame (reviewer token in X-Review-Token)",
)
def api_submit(
    frame_id: int,
    body: ReviewIn,
    reviewer: str = Depends(require_reviewer),
    writer: Engine = Depends(get_review_writer),
    config: DashboardConfig = Depends(get_config),
) -> ReviewOut:
    try:
        return submit_review(writer, frame_id, reviewer, body, score_threshold=config.score_threshold, default_size=_size(config))
    except ReviewNotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    except ReviewRefusedError as exc:
        raise HTTPException(422, str(exc)) from None


@router.get(
    "/api/review/eval",
    response_model=list[ReviewedScore],
    summary="the deployed model on the reviewed frames, per ISO week of review (newest first), with how many frames back each",
)
def api_eval(reader: AnalyticsReader = Depends(get_reader)) -> list[ReviewedScore]:
    with reader.engine.connect() as conn:
        return weekly(conn)


@router.get("/review/eval", response_class=HTMLResponse, include_in_schema=False)
def eval_page(request: Request, reader: AnalyticsReader = Depends(get_reader)) -> HTMLResponse:
    with reader.engine.connect() as conn:
        weeks = weekly(conn)
    return templates.TemplateResponse(request, "review_eval.html", {"weeks": weeks})


@router.get(
    "/api/review/shadow",
    response_model=list[Comparison],
    summary="each shadow model vs the deployed one: reviewed set, verdict flips",
)
def api_shadow(reader: AnalyticsReader = Depends(get_reader), config: DashboardConfig = Depends(get_config)) -> list[Comparison]:
    with reader.engine.connect() as conn:
        return [compare(conn, model, score_threshold=config.score_threshold) for model in shadow_models(conn)]


@router.get("/review/shadow", response_class=HTMLResponse, include_in_schema=False)
def shadow_page(
    request: Request, reader: AnalyticsReader = Depends(get_reader), config: DashboardConfig = Depends(get_config)
) -> HTMLResponse:
    with reader.engine.connect() as conn:
        comparisons = [compare(conn, model, score_threshold=config.score_threshold) for model in shadow_models(conn)]
    return templates.TemplateResponse(request, "review_shadow.html", {"comparisons": comparisons})


@router.get("/review", response_class=HTMLResponse, include_in_schema=False)
def queue_page(
    request: Request, reader: AnalyticsReader = Depends(get_reader), config: DashboardConfig = Depends(get_config)
) -> HTMLResponse:
    with reader.engine.connect() as conn:
        queue = review_queue(conn, config.review, config.score_threshold)
    context: dict[str, Any] = {"queue": queue, "enabled": bool(config.reviewers), "review": config.review}
    return templates.TemplateResponse(request, "review.html", context)


@router.get("/review/frames/{frame_id}", response_class=HTMLResponse, include_in_schema=False)
def review_page(
    frame_id: int,
    request: Request,
    queue: str = "direct",
    reader: AnalyticsReader = Depends(get_reader),
    config: DashboardConfig = Depends(get_config),
) -> HTMLResponse:
    try:
        with reader.engine.connect() as conn:
            frame = review_frame(conn, frame_id, config.score_threshold, _size(config))
    except ReviewNotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    context = {
        "frame": frame,
        "queue": queue if queue in ("ng", "near", "ok_sample", "direct") else "direct",
        "enabled": bool(config.reviewers),
        "has_images": request.app.state.images is not None,
    }
    return templates.TemplateResponse(request, "review_frame.html", context)
