"""The reliability pages keep up with the tests and the code they describe."""

from __future__ import annotations

import re
from pathlib import Path

from ratelimit_mw.core.rates import ALGORITHMS
from tests.redis.test_failure_matrix import CLUSTER_FAULTS, MODES, STANDALONE_FAULTS

ROOT = Path(__file__).resolve().parents[2]


def test_failure_matrix_page_has_a_measured_row_for_every_case() -> None:
    """Add a fault to the matrix and the page must be regenerated (``RATELIMIT_WRITE_DOCS=1``)."""
    rows = set(re.findall(r"^\| (standalone|cluster 3\+3) \| ([a-z-]+) \| `(\w+)` \| [-\d.]+ \| [\d.]+ \|",
                          (ROOT / "docs" / "failure-matrix.md").read_text(), re.M))
    expected = {("standalone", f, m) for f in STANDALONE_FAULTS for m in MODES}
    expected |= {("cluster 3+3", f, m) for f in CLUSTER_FAULTS for m in MODES}
    assert expected - rows == set(), "docs/failure-matrix.md lacks rows: regenerate it"
    assert rows - expected == set(), "docs/failure-matrix.md has rows no test measures"


def test_every_algorithm_has_a_stated_accuracy_bound() -> None:
    page = (ROOT / "docs" / "redis.md").read_text()
    section = page.split("## Accuracy across processes and servers", 1)[1].split("\n## ", 1)[0]
    stated = set(re.findall(r"^\| `(\w+)`(?:, `(\w+)`)? \|", section, re.M))
    names = {name for pair in stated for name in pair if name} - {"algorithm"}  # the header row
    assert names == set(ALGORITHMS)


def test_security_policy_covers_the_threat_model() -> None:
    text = (ROOT / "SECURITY.md").read_text()
    headings = set(re.findall(r"^#+ (.+)$", text, re.M))
    for heading in ("Reporting a vulnerability", "What the limiter defends", "What it does not defend",
                    "Trusted proxies", "The key secret", "The admin token"):
        assert heading in headings, heading
