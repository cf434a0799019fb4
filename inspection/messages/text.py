"""Text for log lines and errors: the one form of a frame's identity, and hostile values cut short."""

from __future__ import annotations


def frame_label(car_id: object | None, camera: int | None, shot: int | None) -> str:
    """The one text form of a frame's identity, "car=… cam=… shot=…", leaving out parts not known."""
    return " ".join(f"{name}={value}" for name, value in (("car", car_id), ("cam", camera), ("shot", shot)) if value is not None)


def short_text(value: object, limit: int = 40, *, quote: bool = True) -> str:
    """A header value for an error message: its repr (bare when `quote` is off and the value is
    short printable text), cut to `limit` characters so a hostile value cannot flood logs and rows."""
    if not quote and isinstance(value, str) and len(value) <= limit and value.isprintable():
        return value
    if isinstance(value, int) and not isinstance(value, bool) and len(str(value)) <= limit:
        return str(value)
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"
