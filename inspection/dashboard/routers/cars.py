"""One car: its cameras × shots as a grid of frames (stored, error, missing)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from ...analytics import AnalyticsReader
from ...analytics.models import CarDetail
from ..config import DashboardConfig
from ..deps import get_config, get_reader
from ..templating import templates

router = APIRouter(tags=["cars"])


@router.get("/api/cars/{car_id:path}", response_model=CarDetail, summary="one car and the state of each of its frames")
def api_car(car_id: str, reader: AnalyticsReader = Depends(get_reader)) -> CarDetail:
    return reader.car(car_id)


@router.get("/cars/{car_id:path}", response_class=HTMLResponse, include_in_schema=False)
def car_page(
    car_id: str, request: Request, reader: AnalyticsReader = Depends(get_reader), config: DashboardConfig = Depends(get_config)
) -> HTMLResponse:
    detail = reader.car(car_id)
    rows = [[detail.cells[camera * detail.shots + shot] for camera in range(detail.cameras)] for shot in range(detail.shots)]
    return templates.TemplateResponse(
        request,
        "car.html",
        {
            "detail": detail,
            "rows": rows,
            "mark": reader.change_mark().mark,
            "poll_s": config.poll_s,
        },
    )
