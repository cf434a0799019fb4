"""One router per resource: line (and the car list), cars, frames, detections, problems."""
