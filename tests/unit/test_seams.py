"""Each library seam that touches private attributes fails loudly when an upgrade moves them."""
from __future__ import annotations

from chalice.app import CaseInsensitiveMapping

from chalicelib import chalice_seam, powertools_seam
from chalicelib.cache import redis_seam


def test_redis_py_connection_internals() -> None:
    redis_seam.check()


def test_chalice_header_dict() -> None:
    chalice_seam.check()
    headers = chalice_seam.lower_case_headers(CaseInsensitiveMapping({"Authorization": "Bearer x"}))
    assert type(headers) is dict and headers.get("authorization") == "Bearer x"


def test_powertools_formatter_keys() -> None:
    powertools_seam.check()
