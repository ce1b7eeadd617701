"""The one place that touches the Powertools logger formatter's key dict.

`Logger.append_keys` costs a method chain per call; the request scope instead writes the
request id straight into the dict the formatter renders (`log_format`, not documented).
`check()` fails loudly when an upgrade moves it (tests/unit/test_seams.py).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger


def log_keys(logger: Logger) -> dict[str, Any]:
    """The dict of keys the logger's formatter adds to every line (append_keys updates it)."""
    return logger.registered_formatter.log_format  # type: ignore[attr-defined]


def check() -> None:
    """Raise if appended keys no longer land in the formatter's `log_format` dict."""
    from aws_lambda_powertools import Logger

    probe = Logger(service="seam-probe")
    probe.append_keys(seam_probe="1")
    keys = getattr(probe.registered_formatter, "log_format", None)
    if not isinstance(keys, dict) or keys.get("seam_probe") != "1":
        raise RuntimeError("Powertools formatter log_format moved: update chalicelib/powertools_seam.py")
