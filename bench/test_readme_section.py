"""The bench writes its latest targets into the README between markers, and only there."""
from __future__ import annotations

from pathlib import Path

from bench import report

RUN = {"meta": {"mode": "quick", "timestamp": "20261202T050000Z", "cpus": 2, "elapsed_s": 81.0}}
VERDICTS = [{"target": "L1 lookup <= 1 us", "status": "PASS", "detail": "0.70 us"},
            {"target": "booking <= 2x", "status": "FAIL", "detail": "2.10x"}]


def test_only_the_marked_section_changes() -> None:
    before = f"# Title\n\nintro\n{report.README_START}\nold table\n{report.README_END}\n\n## Next\n"
    after = report.replace_section(before, report.readme_table(RUN, VERDICTS))
    assert after.startswith("# Title\n\nintro\n" + report.README_START + "\n")
    assert after.endswith(report.README_END + "\n\n## Next\n")
    assert "old table" not in after
    assert "| L1 lookup <= 1 us | PASS | 0.70 us |" in after and "| booking <= 2x | FAIL | 2.10x |" in after
    assert "Latest `make bench-quick` (20261202T050000Z, 2 CPUs, 81 s" in after


def test_the_readme_has_the_markers() -> None:
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert text.index(report.README_START) < text.index(report.README_END)
