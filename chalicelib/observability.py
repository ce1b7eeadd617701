"""Logging and metrics with Powertools: JSON logs with the request id, EMF metrics."""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

from aws_lambda_powertools import Logger
from chalice import Chalice

logger = Logger(service="hospital-booking")


def configure(app: Chalice) -> None:
    """Route the standard library's loggers of chalicelib through the Powertools Logger."""
    root = logging.getLogger("chalicelib")
    if not root.handlers:
        for handler in logger.handlers:
            root.addHandler(handler)
        root.setLevel(logger.log_level)
        root.propagate = False


def log_scheduled(name: str, job: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run a scheduled job, logging its outcome and duration."""
    started = time.perf_counter()
    try:
        result = job()
    except Exception:
        logger.exception("scheduled job failed", extra={"job": name})
        raise
    logger.info("scheduled job done", extra={"job": name, "ms": round((time.perf_counter() - started) * 1000, 1),
                                             "result": result})
    return result
