"""The line: newest cars, today's figures, charts; the change mark open pages poll."""

from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from ...analytics import AnalyticsReader
from ...analytics.models import CarsPage, ChangeMark, Headline, InspectionVerdict, LineCharts
from .. import charts
from ..config import DashboardConfig
from ..deps import get_config, get_reader
from ..templating import templates

router = APIRouter(tags=["line"])

PageQ = Query(1, ge=1, le=100_000)
PerPageQ = Query(25, ge=1, le=200)
VerdictQ = Query(None, description="only cars with this inspection verdict")
VERDICTS = ("ok", "ng", "incomplete", "error")


@router.get("/api/line", response_model=Headline, summary="today's figures: cars, miss rate, frames/s, parked")
def api_headline(reader: AnalyticsReader = Depends(get_reader)) -> Headline:
    return reader.headline()


@router.get("/api/cars", response_model=CarsPage, summary="cars, NG first then newest first, paginated, with their verdicts")
def api_cars(
    page: int = PageQ,
    per_page: int = PerPageQ,
    verdict: Optional[InspectionVerdict] = VerdictQ,
    reader: AnalyticsReader = Depends(get_reader),
) -> CarsPage:
    return reader.cars(page, per_page, verdict)


@router.get("/api/line/charts", response_model=LineCharts, summary="series of the line page's charts")
def api_charts(
    window_s: float = Query(1800.0, gt=0, le=7 * 86400, description="seconds of captures, ending at the newest"),
    reader: AnalyticsReader = Depends(get_reader),
) -> LineCharts:
    return reader.charts(window_s)


@router.get("/api/line/mark", response_model=ChangeMark, summary="changes whenever anything is stored or parked")
def api_mark(reader: AnalyticsReader = Depends(get_reader)) -> ChangeMark:
    return reader.change_mark()


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def line_page(
    request: Request,
    page: int = PageQ,
    per_page: int = PerPageQ,
    verdict: Optional[InspectionVerdict] = VerdictQ,
    reader: AnalyticsReader = Depends(get_reader),
    config: DashboardConfig = Depends(get_config),
) -> HTMLResponse:
    series = reader.charts()
    return templates.TemplateResponse(
        request,
        "line.html",
        {
            "headline": reader.headline(),
            "cars": reader.cars(page, per_page, verdict),
            "verdict_filter": verdict,
            "verdicts": VERDICTS,
            "mark": reader.change_mark().mark,
            "poll_s": config.poll_s,
            "charts": [
                charts.car_latency_chart(series.cars),
                charts.class_chart(series.classes),
                charts.latency_chart(series.latency),
            ],
        },
    )
