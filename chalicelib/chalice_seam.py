"""The one place that touches Chalice's private request-header storage.

`CaseInsensitiveMapping` keeps the headers lower-cased in `_dict`; Mapping.get on the
mapping itself raises and catches a KeyError for every absent header (about 0.8 us).
`check()` fails loudly when an upgrade moves it (tests/unit/test_seams.py).
"""
from __future__ import annotations

from typing import Mapping

from chalice.app import CaseInsensitiveMapping


def lower_case_headers(headers: CaseInsensitiveMapping) -> Mapping[str, str]:
    """The request headers as a plain mapping read by lower-case name."""
    return getattr(headers, "_dict", headers)


def check() -> None:
    """Raise if this Chalice no longer keeps lower-cased headers in `_dict`."""
    inner = getattr(CaseInsensitiveMapping({"X-Probe": "1"}), "_dict", None)
    if not isinstance(inner, dict) or inner.get("x-probe") != "1":
        raise RuntimeError("chalice CaseInsensitiveMapping._dict moved: update chalicelib/chalice_seam.py")
