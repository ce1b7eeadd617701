"""What a process does with settings it refuses (`SettingsError`): one ERROR log line per
distinct set of problems (a cold start logs it once, not on every request), a 503
`misconfigured` answer for an API request (docs/http-errors.md), and a result, not a
traceback, for a scheduled job. No line carries a secret's value: the problems never do."""
from __future__ import annotations

import logging
import threading
from typing import Any, Optional

from chalice import Response

from chalicelib.http import error_response
from chalicelib.settings import SettingsError

log = logging.getLogger("chalicelib.settings")

_reported: Optional[tuple[str, ...]] = None
_lock = threading.Lock()


def report(error: SettingsError) -> None:
    """Log the problems at ERROR, unless these very problems were logged already."""
    global _reported
    with _lock:
        if error.problems == _reported:
            return
        _reported = error.problems
    log.error("settings refused: %s", "; ".join(error.problems))


def misconfigured_response(error: SettingsError) -> Response:
    """503 `misconfigured`, naming each variable, its problem and what is allowed."""
    report(error)
    return error_response(503, "misconfigured", f"The service is misconfigured: {'; '.join(error.problems)}.")


def misconfigured_result(error: SettingsError) -> dict[str, Any]:
    """A scheduled job's result when the settings are refused (nothing was run)."""
    report(error)
    return {"status": "misconfigured", "problems": list(error.problems)}
