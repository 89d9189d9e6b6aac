"""docs/policies.md lists every field of the policy schema, at its level, with type, default, example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ratelimit_mw.policy import overload, schema

PAGE = Path(__file__).resolve().parents[2] / "docs" / "policies.md"

#: Section heading of the page -> the schema's fields for that level.
LEVELS = {
    "Top level": schema.TOP_FIELDS,
    "defaults": schema.DEFAULTS_FIELDS,
    "policies": schema.POLICY_FIELDS,
    "routes": schema.ROUTE_FIELDS,
    "unmatched": schema.UNMATCHED_FIELDS,
    "client_ip": schema.CLIENT_IP_FIELDS,
    "response": schema.RESPONSE_FIELDS,
    "headers_options": schema.HEADERS_OPTIONS_FIELDS,
    "overload": overload.OVERLOAD_FIELDS,
}
ROW = re.compile(r"^\| `(?P<field>[a-z0-9_]+)` \|(?P<rest>.*)\|$", re.M)


def sections(text: str) -> dict[str, str]:
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def rows(section: str) -> dict[str, list[str]]:
    """``field -> [type, default, example]`` for the field table of a section."""
    out = {}
    for match in ROW.finditer(section):
        cells = [c.strip() for c in match["rest"].split(" | ")]
        out.setdefault(match["field"], cells)
    return out


@pytest.fixture(scope="module")
def page_sections() -> dict[str, str]:
    return sections(PAGE.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("level", "field"), [(level, field) for level, fields in LEVELS.items() for field in fields],
    ids=lambda v: str(v),
)
def test_every_schema_field_has_a_row_with_type_default_and_example(
    page_sections: dict[str, str], level: str, field: str
) -> None:
    assert level in page_sections, f"docs/policies.md has no '## {level}' section"
    table = rows(page_sections[level])
    assert field in table, f"docs/policies.md, section '{level}': no row for the field `{field}`"
    cells = table[field]
    assert len(cells) == 3 and all(cells), f"`{field}`: expected type, default and example, got {cells}"


@pytest.mark.parametrize("level", list(LEVELS))
def test_no_row_for_a_field_the_schema_does_not_have(page_sections: dict[str, str], level: str) -> None:
    documented = set(rows(page_sections[level]))
    assert documented <= set(LEVELS[level]), f"'{level}': not in the schema: {documented - set(LEVELS[level])}"


def test_the_rows_parser_sees_a_missing_field() -> None:
    text = (
        "| field | type | default | example |\n| --- | --- | --- | --- |\n"
        "| `status` | integer | `429` | `status: 503` |\n"
    )
    assert set(rows(text)) == {"status"}
