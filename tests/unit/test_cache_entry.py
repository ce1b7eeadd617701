"""The L2 envelope: an entry survives encode/decode unchanged, and bytes that are not an
entry (damaged, foreign, or from another format) decode to None instead of raising."""
from __future__ import annotations

import pytest

from chalicelib.cache.entry import Entry


def test_round_trip_keeps_every_field():
    entry = Entry.build('{"slots":[]}', (("v:a", "1"), ("v:b", "x9")), fresh_s=15, stale_s=300)
    again = Entry.decode(entry.encode())
    assert again == entry


@pytest.mark.parametrize("raw", [
    b"",
    b"no newline at all",
    b"not json\n{}",
    b'{"a": 1}\n{}',                                     # not a list
    b'["etag", 1.0, 2.0]\n{}',                           # too few fields
    b'["etag", 1.0, 2.0, 3.0, 7]\n{}',                   # versions not a list
    b'["etag", 1.0, 2.0, 3.0, [5]]\n{}',                 # a version that is not a pair
    b'["etag", 1.0, 2.0, 3.0, [["v:a", "1"]]]\n\xff\xfe',  # body not UTF-8
])
def test_anything_else_decodes_to_none(raw):
    assert Entry.decode(raw) is None


def test_versions_of_another_type_never_equal_real_ones():
    entry = Entry.decode(b'["etag", 1.0, 2.0, 3.0, [["v:a", 1]]]\n{}')
    assert entry is not None and entry.versions != (("v:a", "1"),)
