"""`FrameId`: which frame of which car a record is, validated once, with one text form.

Used by the contract (`FrameMessage.frame_id`), the edge stages, the store (`FrameRecord`,
`StoredFrame`) and every log line and error naming a frame ("car=… cam=… shot=…"). Its bounds are
what the results store holds (tests check they agree with the columns), whatever the site; what
depends on the site's line (camera < cameras, …) is `validation.py`'s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import MessageError
from .text import frame_label, short_text

CAR_ID_MAX_CHARS = 64  # cars.car_id VARCHAR(64)
INDEX_MAX = 2**31 - 1  # camera, shot, shots_per_car: INTEGER columns


class FrameIdError(MessageError):
    """A frame identity out of the contract's bounds; `field` names the part, `problem` says why."""


@dataclass(frozen=True)
class FrameId:
    """Car, camera (0-based), the camera's shot (0-based) and the car's frame count over all cameras.

    Construction validates (raises FrameIdError): car_id printable, 1..64 characters; camera, shot
    and shots_per_car integers in 0..2^31-1, shots_per_car >= 1 and shot < shots_per_car.
    """

    car_id: str
    camera: int
    shot: int
    shots_per_car: int

    def __post_init__(self) -> None:
        car_id = self.car_id
        if not isinstance(car_id, str) or not car_id.strip():
            raise FrameIdError(f"car_id {short_text(car_id)} must be a non-empty string", field="car_id")
        if len(car_id) > CAR_ID_MAX_CHARS:
            raise FrameIdError(f"car_id of {len(car_id)} characters is too long; at most {CAR_ID_MAX_CHARS}", field="car_id")
        if not car_id.isprintable():
            bad = next(c for c in car_id if not c.isprintable())
            raise FrameIdError(
                f"car_id {short_text(car_id)} holds the control/unprintable character U+{ord(bad):04X}; expected printable text",
                field="car_id",
            )
        for name in ("camera", "shot", "shots_per_car"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise FrameIdError(f"{name}={short_text(value)} must be an integer", field=name)
            if value < 0:
                raise FrameIdError(f"{name}={value} is negative; expected a value >= 0", field=name)
            if value > INDEX_MAX:
                raise FrameIdError(f"{name}={short_text(value)} is out of range; at most 2^31-1", field=name)
        if self.shots_per_car == 0:
            raise FrameIdError("shots_per_car=0; a car has at least one frame", field="shots_per_car")
        if self.shot >= self.shots_per_car:
            raise FrameIdError(
                f"shot={self.shot} is out of range; expected 0 <= shot < shots_per_car={self.shots_per_car}", field="shot"
            )

    @property
    def key(self) -> str:
        """The Kafka key of the frame's record: one camera's shots share a partition."""
        return f"{self.car_id}:{self.camera}"

    @property
    def label(self) -> str:
        """ "car=… cam=… shot=…", for log lines and error messages."""
        return frame_label(self.car_id, self.camera, self.shot)

    def __str__(self) -> str:
        return self.label
