"""Settings for tests: the one factory every test folder builds its `Settings` with, and the presets
several folders share.

Owns: `settings_for` (a `Settings` on a state dir under the test's tmp dir), `settings_doc` (the same
settings as the plain document a `tezzeret serve --config` file holds), the quiet-forge preset and
the bus keys the tests sign with. It must never change a shipped default behind a test's back:
beyond the state dir, every value comes from a preset or override the caller names, so tests that
check the seed's values (resilience, cache) get exactly those.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tezzeret.config import Settings, load_settings

Layer = Mapping[str, Any]

# A forge that only does what the test asks: one compile slot, no idle recompiles, no polling (it
# would submit library blueprints at the policy's tier on its own), a short shutdown grace, no CPU
# cap for contention (the other test worker keeps the host busy; a capped compile takes four times
# as long; tests/sandbox/test_sandbox_throttle.py tests the cap itself), and a journal synced on
# every record (the durability the crash tests rely on).
QUIET_FORGE: Layer = {
    "compilation": {"max_concurrent_jobs": 1, "idle_recompilation": False},
    "polling": {"initial_full_scan": False, "refresh_interval_minutes": 0},
    "sandbox": {"grace_period_s": 5.0, "contended_cpu_quota": 0},
    "wal": {"durability_mode": "fsync"},
}

# The bus keys tests sign with: the forge's own, Tamiyo's (emergency only), Karn's (publisher only).
TAMIYO_SECRET = "tamiyo-test-secret"
KARN_SECRET = "karn-test-secret"
BUS_KEYS: list[dict[str, Any]] = [
    {"key_id": "tezzeret", "secret": "tezzeret-test-secret", "roles": ["publisher", "emergency", "admin"]},
    {"key_id": "tamiyo", "secret": TAMIYO_SECRET, "roles": ["emergency"]},
    {"key_id": "karn", "secret": KARN_SECRET, "roles": ["publisher"]},
]


def merge_sections(*layers: Layer) -> dict[str, Any]:
    """Later layers win, section by section: a mapping merges into the same section's mapping one
    level deep (its own values replace whole, so a `ray.targets` override is the whole table); any
    other value replaces the key."""
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
                out[key] = {**out[key], **value}
            else:
                out[key] = value
    return out


def settings_doc(state_dir: Path | str, *presets: Layer, **overrides: Any) -> dict[str, Any]:
    """The settings document for `state_dir`: the presets in order, then `overrides`, merged by
    `merge_sections`. Plain values only, so it dumps as YAML for `tezzeret serve --config`."""
    return merge_sections({"state_dir": str(state_dir)}, *presets, overrides)


def settings_for(state_dir: Path | str, *presets: Layer, **overrides: Any) -> Settings:
    """Validated `Settings` for `state_dir` (see `settings_doc`); a bad key raises `ConfigError`."""
    return load_settings(**settings_doc(state_dir, *presets, **overrides))
