"""Patterns torch 2.13's precompile + AOTI used to get wrong, compiled at FAST and checked after a
fresh-process load (slow).

Conv followed by BatchNorm or GELU, grouped, strided depthwise and 1-d convs (wrong gradients from
channels-last layout optimisation until the Inductor tiers turned it off), and embedding_bag in
every mode (its backward runs through AOTI's proxy executor, whose `<so>.json` must be re-homed
beside its `.so`). One blueprint per pattern, one training entry each, compiled once per session;
every artifact's entries are loaded in one fresh process with an empty Inductor cache and checked
against eager over two SGD steps (losses, every gradient, final parameters and buffers).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tz_compile_support import (
    EMBEDDING_BAG_PATTERNS,
    PATTERNS,
    fresh_process_parity,
    pattern_artifact,
)

from tezzeret.artifact import file as artifact
from tezzeret.errors import TezzeretError

pytestmark = pytest.mark.slow

# Each pattern declares its batch as a symbol over 1..16 (example 4): FAST builds one dynamic-batch
# training entry for the whole range.
ENTRY = "b1-16-train"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | str]:
    """Pattern name -> its FAST artifact, or the compile error (reported by that pattern's test)."""
    out: dict[str, Path | str] = {}
    for name in PATTERNS:
        try:
            out[name] = pattern_artifact(tmp_path_factory, name)
        except TezzeretError as exc:
            out[name] = f"{type(exc).__name__}: {exc}"
    return out


@pytest.fixture(scope="module")
def fresh(artifacts: dict[str, Path | str], tmp_path_factory: pytest.TempPathFactory) -> dict:
    paths = [p for p in artifacts.values() if isinstance(p, Path)]
    return fresh_process_parity(paths, tmp_path_factory.mktemp("fresh-parity"))


@pytest.mark.parametrize("name", PATTERNS)
def test_pattern_compiles_and_trains_like_eager_after_a_fresh_process_load(
    name: str, artifacts: dict[str, Path | str], fresh: dict
) -> None:
    path = artifacts[name]
    assert isinstance(path, Path), path
    manifest, _, _ = artifact.read_manifest(path)
    # In-process verification kept the entry (compile_blueprint checked it against eager).
    assert [(e.key, e.verified, e.grad_enabled) for e in manifest.entries] == [(ENTRY, True, True)]
    (entry,) = manifest.entries
    assert entry.dynamic_batch and (entry.batch_min, entry.batch_max) == (1, 16)
    assert not manifest.stats.dropped_entries
    assert [p.name for p in manifest.payloads] == [f"entry/{ENTRY}"]
    # And again in a process that never compiled anything: the bytes a consumer gets.
    got = fresh["artifacts"][str(path)][ENTRY]
    assert got["payload"] and got["passed"], got["failures"]
    assert got["tolerance_used"] <= 1.0


def test_the_fresh_process_compiled_nothing(fresh: dict) -> None:
    counters = fresh["counters"]
    assert counters.get("stats.unique_graphs", 0) == 0, counters
    assert counters.get("aot_autograd.total", 0) == 0, counters
    assert not [k for k in counters if k.startswith("inductor.")], counters
    assert fresh["cache_dir_entries"] == []


@pytest.mark.parametrize("name", EMBEDDING_BAG_PATTERNS)
def test_embedding_bag_entries_keep_the_proxy_executor_description_beside_the_so(
    name: str, artifacts: dict[str, Path | str], fresh: dict
) -> None:
    path = artifacts[name]
    assert isinstance(path, Path), path
    homes = fresh["artifacts"][str(path)][ENTRY]["homes"]
    assert homes, "the entry's native code was not re-homed under the kernel dir"
    # One content-addressed directory per compiled graph; the backward's holds the .so and the
    # .json that describes the proxy-executor calls (`_embedding_bag_backward` has no C shim).
    pairs = [
        files for files in homes.values()
        if any(f.endswith(".so") and f[: -len(".so")] + ".json" in files for f in files)
    ]
    assert pairs, homes
