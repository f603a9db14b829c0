"""Settings: the seed's YAML verbatim, upstream keys, environment overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tezzeret.config import Strategy, load_settings
from tezzeret.errors import ConfigError

SEED_BLOCK = """
tezzeret:
  # Core compilation settings
  compilation:
    max_concurrent_jobs: 2
    default_strategy: STANDARD
    enable_emergency_compilation: true
    enable_caching: true
    gpu_utilization_limit: 0.25

  # Circuit breaker configuration
  circuit_breakers:
    enabled: true
    failure_threshold: 3
    timeout_ms: 30000

  # Conservative mode settings
  conservative_mode:
    auto_enable: true
    gpu_threshold_percent: 20
    threshold_duration_minutes: 5

  # WAL configuration
  wal:
    enabled: true
    path: "/var/lib/esper/tezzeret/wal"
    durability_mode: "O_DSYNC"

  # Memory management
  memory_management:
    ttl_cleanup_enabled: true
    cleanup_interval_seconds: 300
"""

UPSTREAM_KEYS = """
tezzeret:
  circuit_breakers:
    gpu_memory: {failure_threshold: 3, timeout_ms: 30000, enabled: true}
    compilation_timeout: {failure_threshold: 2, timeout_ms: 300000, enabled: true}
    kernel_validation: {failure_threshold: 5, timeout_ms: 60000, enabled: true}
  conservative_mode:
    settings: {max_concurrent_jobs: 1, gpu_utilization_limit: 0.15, timeout_extension_factor: 1.5,
               disable_aggressive_compilation: true}
  wal: {filesystem_type: ext4, checkpoint_interval_compilations: 10, max_wal_size_mb: 1024,
        recovery_validation: strict}
  memory_management: {cache_ttl_seconds: 1800, job_ttl_seconds: 3600, artifact_ttl_seconds: 86400,
                      max_cache_size_mb: 4096}
  protocol: {version: v2, validate_decode_reencode: true, forbidden_features_check: true}
  timeouts_ms: {emergency_compilation: 10000, fast_compilation: 65000, standard_compilation: 250000,
                aggressive_compilation: 960000, circuit_breaker_reset: 30000,
                conservative_mode_timeout: 300000}
  resources: {max_gpu_memory_gb: 16, max_cpu_cores: 8,
              per_job_memory_limits: {emergency: 2048, fast: 4096, standard: 8192, aggressive: 16384}}
  polling: {initial_full_scan: true, refresh_interval_minutes: 0}
"""


def test_embedded_defaults_are_the_seeds() -> None:
    s = load_settings()
    assert s.compilation.max_concurrent_jobs == 2
    assert s.compilation.default_strategy is Strategy.STANDARD
    assert s.compilation.gpu_utilization_limit == 0.25
    assert s.circuit_breakers.failure_threshold == 3
    assert s.circuit_breakers.timeout_ms == 30_000
    assert s.conservative_mode.gpu_threshold_percent == 20
    assert s.memory_management.cleanup_interval_seconds == 300
    assert s.timeouts_ms.for_strategy("FAST") == 65_000
    assert s.resources.per_job_memory_limits.for_strategy(Strategy.AGGRESSIVE) == 16_384
    assert s.wal_dir == s.state_dir / "wal"


def test_seed_yaml_block_loads_verbatim(tmp_path: Path) -> None:
    path = tmp_path / "seed.yaml"
    path.write_text(SEED_BLOCK)
    s = load_settings(path)
    assert s.wal_dir == Path("/var/lib/esper/tezzeret/wal")
    assert s.wal.durability_mode == "O_DSYNC"


def test_upstream_keys_load(tmp_path: Path) -> None:
    path = tmp_path / "upstream.yaml"
    path.write_text(UPSTREAM_KEYS)
    s = load_settings(path)
    assert s.circuit_breakers.for_breaker("compilation_timeout").failure_threshold == 2
    assert s.circuit_breakers.for_breaker("compilation_timeout").timeout_ms == 300_000
    # A breaker without its own keys takes the global defaults.
    assert s.circuit_breakers.for_breaker("bus").failure_threshold == 3
    assert s.polling.refresh_interval_minutes == 0


def test_unknown_key_and_bad_value_name_their_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("tezzeret:\n  wal:\n    durabilty_mode: fsync\n  compilation:\n    max_concurrent_jobs: -1\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    paths = {p for p, _ in info.value.problems}
    assert paths == {"wal.durabilty_mode", "compilation.max_concurrent_jobs"}
    assert "unknown key" in str(info.value)
    assert str(path) in str(info.value)


def test_malformed_yaml_and_missing_file_are_clear(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("tezzeret: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_settings(scalar)


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "seed.yaml"
    path.write_text(SEED_BLOCK)
    monkeypatch.setenv("TEZZERET_COMPILATION__MAX_CONCURRENT_JOBS", "1")
    monkeypatch.setenv("TEZZERET_STATE_DIR", str(tmp_path / "state"))
    s = load_settings(path)
    assert s.compilation.max_concurrent_jobs == 1
    assert s.state_dir == tmp_path / "state"
    assert s.compilation.gpu_utilization_limit == 0.25
    monkeypatch.setenv("TEZZERET_COMPILATION__MAX_CONCURRENT_JOBS", "many")
    with pytest.raises(ConfigError, match="compilation.max_concurrent_jobs"):
        load_settings(path)


def test_compile_slots_leave_training_its_reserved_cores() -> None:
    s = load_settings()  # seed: max_concurrent_jobs 2; ours: one core reserved for training
    assert s.compilation.max_concurrent_jobs == 2
    assert s.compile_slots(cores=2) == 1
    assert s.compile_slots(cores=1) == 1  # never zero
    assert s.compile_slots(cores=16) == 2  # never more than configured
    s = load_settings(sandbox={"training_reserved_cores": 0})
    assert s.compile_slots(cores=2) == 2
    s = load_settings(sandbox={"training_reserved_cores": 4}, compilation={"max_concurrent_jobs": 8})
    assert s.compile_slots(cores=8) == 4


def test_contention_threshold_is_half_the_cores_the_workers_leave_free() -> None:
    s = load_settings()
    assert s.contention_threshold(cores=2) == 0.5  # one worker, one free core: half of it
    assert s.contention_threshold(cores=16) == 7.0  # two workers, fourteen free cores
    assert load_settings(sandbox={"contended_threshold_cores": 3}).contention_threshold(cores=16) == 3
    with pytest.raises(ConfigError, match="contended_cpu_quota"):
        load_settings(sandbox={"contended_cpu_quota": -1})


@pytest.mark.parametrize(
    ("overrides", "path", "why"),
    [
        ({"wal": {"enabled": False}}, "wal.enabled", "cannot be turned off"),
        ({"protocol": {"version": "v3"}}, "protocol.version", "v2"),
        ({"protocol": {"validate_decode_reencode": False}}, "protocol.validate_decode_reencode", "cannot be turned off"),
        ({"protocol": {"forbidden_features_check": False}}, "protocol.forbidden_features_check", "cannot be turned off"),
        ({"protocol": {"containerized_toolchain": True}}, "protocol.containerized_toolchain", "not supported"),
        ({"protocol": {"toolchain_image": "protoc:3"}}, "protocol.toolchain_image", "containerized_toolchain"),
    ],
)
def test_keys_that_cannot_take_effect_are_refused_with_their_path(overrides: dict, path: str, why: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(**overrides)
    assert path in str(err.value) and why in str(err.value)


def test_max_cpu_cores_caps_compile_slots() -> None:
    # The default cap (8 cores) less the core left to training.
    assert load_settings(compilation={"max_concurrent_jobs": 8}).compile_slots(cores=16) == 7
    assert load_settings(compilation={"max_concurrent_jobs": 8}, resources={"max_cpu_cores": 3}).compile_slots(cores=16) == 2
    assert load_settings(resources={"max_cpu_cores": 1}).compile_slots(cores=16) == 1


def test_wal_filesystem_type_is_checked_against_the_real_mount(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tezzeret.forge.service import check_wal_filesystem
    from tezzeret.wal.mounts import check_directory

    actual = check_directory(tmp_path).mount
    assert actual is not None
    other = "xfs" if actual.fs_type != "xfs" else "ext4"
    check_wal_filesystem(load_settings(state_dir=tmp_path, wal={"filesystem_type": "auto"}))
    with pytest.raises(ConfigError, match=f"wal.filesystem_type.*is {other}, but .* is on {actual.fs_type}"):
        check_wal_filesystem(load_settings(state_dir=tmp_path, wal={"filesystem_type": other}))
    if actual.fs_type in ("ext4", "xfs"):
        check_wal_filesystem(load_settings(state_dir=tmp_path, wal={"filesystem_type": actual.fs_type}))
