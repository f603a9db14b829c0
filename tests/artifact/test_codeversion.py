"""The compile-code version is derived from the sources, and every artifact id follows it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tezzeret.artifact import codeversion
from tezzeret.blueprint import digest as blueprint_digest
from tezzeret.blueprint import library
from tezzeret.compile.identity import artifact_id, toolchain_for_tier
from tezzeret.compile.tiers import tier_for


@pytest.fixture
def package_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the packages the versions digest, as the source root codeversion reads."""
    for name in ("artifact", "blueprint", "compile"):
        shutil.copytree(codeversion._ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(codeversion, "_ROOT", tmp_path)
    codeversion.source_digest.cache_clear()
    yield tmp_path
    codeversion.source_digest.cache_clear()


def test_editing_a_builder_or_the_compile_code_changes_ids(package_copy: Path) -> None:
    digest = blueprint_digest(library()[0].ir)
    fast = tier_for("fast")
    before = (codeversion.compile_code_version(), codeversion.blueprint_code_version(), artifact_id(digest, fast))
    layers = package_copy / "blueprint" / "layers.py"
    layers.write_text(layers.read_text() + "\n# a changed builder\n")
    codeversion.source_digest.cache_clear()
    after_builder = (codeversion.compile_code_version(), codeversion.blueprint_code_version(), artifact_id(digest, fast))
    assert all(b != a for b, a in zip(before, after_builder, strict=True))
    # Compile code alone: the builder version stays, the toolchain and id move.
    verify = package_copy / "compile" / "verify.py"
    verify.write_text(verify.read_text() + "\n# a changed tolerance\n")
    codeversion.source_digest.cache_clear()
    after_compile = (codeversion.compile_code_version(), codeversion.blueprint_code_version(), artifact_id(digest, fast))
    assert after_compile[0] != after_builder[0] and after_compile[1] == after_builder[1]
    assert after_compile[2] != after_builder[2]
    assert toolchain_for_tier(fast).compile_code_version == after_compile[0]


def test_tier_settings_are_in_the_toolchain() -> None:
    fast, standard = tier_for("fast"), tier_for("standard")
    assert toolchain_for_tier(fast).hash() != toolchain_for_tier(standard).hash()
    assert toolchain_for_tier(fast).tier_settings != toolchain_for_tier(standard).tier_settings
