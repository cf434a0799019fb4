"""Detections: filter by time range, car, camera, class and minimum score; counts per class; a
paginated table; the same rows as CSV, streamed (bounded memory whatever the size)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from ...analytics import AnalyticsReader, DetectionFilter
from ...analytics.models import DetectionsPage
from ..config import DashboardConfig
from ..deps import get_config, get_reader
from ..templating import templates

router = APIRouter(tags=["detections"])
PageQ = Query(1, ge=1, le=100_000)
PerPageQ = Query(50, ge=1, le=500)


def _time(name: str, value: str | None) -> datetime | None:
    if value is None or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise HTTPException(422, f"{name}={value!r} is not a time: use ISO 8601, e.g. 2026-11-27T08:00 (UTC)") from None
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)


def detection_filter(
    since: str | None = Query(
        None,
        description="captured at or after (ISO 8601, UTC if no offset); "
        "default: the last hour of captures (from a whole minute); 'all' for no lower bound",
    ),
    until: str | None = Query(None, description="captured at or before (ISO 8601)"),
    car_id: str | None = Query(None, max_length=64),
    camera: str | None = Query(None, description="0-based camera index"),
    class_name: str | None = Query(None, max_length=64),
    min_score: str | None = Query(None, description="0..1"),
    reader: AnalyticsReader = Depends(get_reader),
    config: DashboardConfig = Depends(get_config),
) -> DetectionFilter:
    """Query parameters (as an HTML form sends them: empty = not set) -> a DetectionFilter."""
    try:
        camera_value = int(camera) if camera and camera.strip() else None
        score = float(min_score) if min_score and min_score.strip() else 0.0
    except ValueError:
        raise HTTPException(422, f"camera={camera!r} must be an integer and min_score={min_score!r} a number") from None
    if since is not None and since.strip().lower() == "all":
        since_value = None
    elif since is None or not since.strip():
        latest = reader.latest_capture()
        # whole minutes, so the per-class counts come from the reader's rollup
        since_value = (
            None if latest is None else (latest - timedelta(seconds=config.detections_window_s)).replace(second=0, microsecond=0)
        )
    else:
        since_value = _time("since", since)
    try:
        return DetectionFilter(
            since=since_value,
            until=_time("until", until),
            car_id=car_id or None,
            camera=camera_value,
            class_name=class_name or None,
            min_score=score,
        )
    except ValueError as exc:
        raise HTTPException(422, f"invalid detection filter: {exc}") from None


@router.get(
    "/api/detections", response_model=DetectionsPage, summary="filtered detections: counts per class and one page of rows"
)
def api_detections(
    f: DetectionFilter = Depends(detection_filter),
    page: int = PageQ,
    per_page: int = PerPageQ,
    reader: AnalyticsReader = Depends(get_reader),
) -> DetectionsPage:
    return reader.detections(f, page, per_page)


@router.get(
    "/api/detections.csv",
    summary="the filtered detections as CSV, streamed",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}}},
)
def api_detections_csv(
    f: DetectionFilter = Depends(detection_filter), reader: AnalyticsReader = Depends(get_reader)
) -> StreamingResponse:
    return StreamingResponse(
        reader.detections_csv(f),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="detections.csv"'},
    )


def _form_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S")
    return str(value)


@router.get("/detections", response_class=HTMLResponse, include_in_schema=False)
def detections_page(
    request: Request,
    f: DetectionFilter = Depends(detection_filter),
    page: int = PageQ,
    per_page: int = PerPageQ,
    reader: AnalyticsReader = Depends(get_reader),
) -> HTMLResponse:
    result = reader.detections(f, page, per_page)
    form = {k: _form_value(v) for k, v in f.model_dump().items()}
    form["since"] = form["since"] or "all"
    query = {k: v for k, v in form.items() if v != ""}
    classes = sorted({c.class_name for c in result.counts} | ({f.class_name} if f.class_name else set()))
    return templates.TemplateResponse(
        request,
        "detections.html",
        {
            "result": result,
            "form": form,
            "classes": classes,
            "csv_url": "/api/detections.csv?" + urlencode(query),
            "prev_url": "/detections?" + urlencode({**query, "page": page - 1}) if page > 1 else None,
            "next_url": "/detections?" + urlencode({**query, "page": page + 1}) if result.has_next else None,
        },
    )
