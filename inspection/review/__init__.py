"""The analyst's loop: reviews of detections (tables in store/review_models.py), the review queue,
reviewer credentials, COCO export of reviewed frames, scoring the deployed model on them, and a
candidate model in shadow."""
