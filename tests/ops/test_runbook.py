"""The runbook has a section for every health reason the forge can give and every alert, each saying
what it means, how to confirm it, what to do and how to undo it."""

from __future__ import annotations

import re

import yaml
from ops_helpers import OPS, REPO

from tezzeret.forge.health import REASONS, RUNBOOK, HealthFacts, assess

RUNBOOK_PATH = REPO / RUNBOOK


def anchor(heading: str) -> str:
    """The anchor a Markdown renderer (GitHub's rules) gives a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def sections() -> dict[str, str]:
    """Anchor -> body of every `## ` section."""
    out: dict[str, str] = {}
    current: str | None = None
    for line in RUNBOOK_PATH.read_text().splitlines():
        if line.startswith("## "):
            current = anchor(line[3:])
            assert current not in out, f"two sections with anchor #{current}"
            out[current] = ""
        elif line.startswith("# "):
            current = None
        elif current is not None:
            out[current] += line + "\n"
    return out


def test_every_health_reason_has_a_complete_section() -> None:
    found = sections()
    for code, kind in REASONS.items():
        assert code in found, f"docs/runbook.md has no section '## {code}'"
        body = found[code]
        for part in ("**Confirm:**", "**Do:**", "**Undo:**"):
            assert part in body, f"#{code} lacks {part}"
        assert kind.level in body, f"#{code} does not say its level {kind.level}"


def test_every_alert_has_a_section() -> None:
    found = sections()
    rules = yaml.safe_load((OPS / "prometheus" / "alerts.yml").read_text())["groups"]
    for rule in (r for g in rules for r in g["rules"]):
        link = rule["annotations"]["runbook_url"]
        assert link.startswith(RUNBOOK + "#")
        assert link.split("#", 1)[1] in found, f"{rule['alert']}: {link} names no section"


def test_links_inside_the_runbook_resolve() -> None:
    found = sections()
    for target in re.findall(r"\]\(#([\w-]+)\)", RUNBOOK_PATH.read_text()):
        assert target in found, f"link to #{target} names no section"


def test_health_reports_link_to_sections_that_exist() -> None:
    found = sections()
    report = assess(
        HealthFacts(breakers={"store": "OPEN", "bus": "HALF_OPEN"}, conservative_mode={"active": True},
                    disk={"low": True}, wal_losses=[{"count": 2}], corrupt_artifacts=1, isolation_level="unshare"),
        sandbox_started=False,
    )
    assert len(report.details) >= 7
    for reason in report.details:
        path, _, section = reason.runbook.partition("#")
        assert path == RUNBOOK and section in found, reason
