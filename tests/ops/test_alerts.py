"""The alert rules: `promtool check rules` accepts them, their `promtool test rules` unit tests pass,
and every alert names its runbook section."""

from __future__ import annotations

import subprocess

import yaml
from ops_helpers import OPS, need

RULES = OPS / "prometheus" / "alerts.yml"
UNIT_TESTS = OPS / "prometheus" / "alerts_test.yml"
REQUIRED = {
    "TezzeretBreakerOpen", "TezzeretConservativeModeStuck", "TezzeretQueueWaitOverBudget",
    "TezzeretWalLossesUnacknowledged", "TezzeretDiskLow", "TezzeretWorkersNotAlive",
    "TezzeretEmergencyP99OverBudget", "TezzeretOutboxGrowing", "TezzeretStoreCorruption",
}


def alerts() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_promtool_checks_the_rules() -> None:
    out = subprocess.run([need("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in out.stdout


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    out = subprocess.run(
        [need("promtool"), "test", "rules", str(UNIT_TESTS)], capture_output=True, text=True, timeout=120, cwd=UNIT_TESTS.parent
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_failure_mode_has_an_alert_with_a_runbook_url_and_a_unit_test() -> None:
    names = [a["alert"] for a in alerts()]
    assert REQUIRED <= set(names), sorted(REQUIRED - set(names))
    tested = {t["alertname"] for case in yaml.safe_load(UNIT_TESTS.read_text())["tests"] for t in case["alert_rule_test"]
              if t.get("exp_alerts")}
    assert set(names) <= tested, f"alerts no unit test sees firing: {sorted(set(names) - tested)}"
    for a in alerts():
        assert a["annotations"]["runbook_url"] == f"docs/runbook.md#{a['alert'].lower()}", a["alert"]
        assert a["labels"]["severity"] in ("warning", "critical")


def test_the_example_prometheus_config_loads_the_rules() -> None:
    config = OPS / "prometheus" / "prometheus.yml"
    out = subprocess.run([need("promtool"), "check", "config", str(config)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 1 rule files found" in out.stdout
