"""What went wrong: error frames and rejected messages, newest first."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from ...analytics import AnalyticsReader
from ...analytics.models import Problems
from ..config import DashboardConfig
from ..deps import get_config, get_reader
from ..templating import templates

router = APIRouter(tags=["problems"])
PageQ = Query(1, ge=1, le=100_000)
PerPageQ = Query(50, ge=1, le=500)


@router.get(
    "/api/problems",
    response_model=Problems,
    summary="error frames and rejected messages with reason, time, topic/partition/offset",
)
def api_problems(page: int = PageQ, per_page: int = PerPageQ, reader: AnalyticsReader = Depends(get_reader)) -> Problems:
    return reader.problems(page, per_page)


@router.get("/problems", response_class=HTMLResponse, include_in_schema=False)
def problems_page(
    request: Request,
    page: int = PageQ,
    per_page: int = PerPageQ,
    reader: AnalyticsReader = Depends(get_reader),
    config: DashboardConfig = Depends(get_config),
) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        "problems.html",
        {
            "problems": reader.problems(page, per_page),
            "mark": reader.change_mark().mark,
            "poll_s": config.poll_s,
        },
    )
