"""Re-homing an entry's bundled native code on load (slow: uses the shared FAST artifact).

Each compiled graph's files land together in one directory named by the hash of all of them (the
AOTI runner finds a `.so`'s proxy-executor `.json` only beside it), and bytes already there are
reused only when they are the verified ones.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import torch

from tezzeret.blueprint import build_module, example_inputs
from tezzeret.artifact import file as artifact
from tezzeret.artifact import payload
from tezzeret.compile import verify

pytestmark = pytest.mark.slow


def _load(fast_artifact: Path, kernel_dir: Path) -> payload.CompiledEntry:
    manifest, _, _ = artifact.read_manifest(fast_artifact)
    data = artifact.read_payload(fast_artifact, manifest, "entry/b8-train")
    return payload.load_entry(data, kernel_dir=kernel_dir)


def _train_matches_eager(fast_artifact: Path, entry: payload.CompiledEntry) -> bool:
    manifest, _, _ = artifact.read_manifest(fast_artifact)
    ir = manifest.blueprint
    torch.manual_seed(0)
    args = tuple(example_inputs(ir, 8))
    return verify.check_parity(lambda: build_module(ir), verify.entry_runner(entry), args, grad_enabled=True).passed


def test_each_graphs_files_share_one_content_addressed_directory(fast_artifact: Path, tmp_path: Path) -> None:
    kernels = tmp_path / "kernels"
    entry = _load(fast_artifact, kernels)
    homes = sorted(p for p in kernels.iterdir() if p.is_dir())
    # A training entry is a forward and a backward graph: one directory each.
    assert len(homes) == 2, homes
    for home in homes:
        files = sorted(home.iterdir())
        assert any(f.suffix == ".so" for f in files), files
        assert not [f for f in files if f.name.startswith(".")], "a temporary file was left behind"
        # The directory's name is the hash of every file in it, names included.
        digest = hashlib.sha256()
        for f in files:
            data = f.read_bytes()
            digest.update(f"{f.name}\0{len(data)}\0".encode())
            digest.update(data)
        assert home.name == digest.hexdigest()[:32]
    assert _train_matches_eager(fast_artifact, entry)


def test_bytes_already_in_the_kernel_dir_are_reused_only_when_they_are_the_verified_ones(
    fast_artifact: Path, tmp_path: Path
) -> None:
    # Lay the files out by loading into one dir, then work on a copy this process never dlopened:
    # glibc hands back an already-loaded library for a path it has seen, whatever is on disk now.
    _load(fast_artifact, tmp_path / "first")
    kernels = tmp_path / "kernels"
    shutil.copytree(tmp_path / "first", kernels)
    sos = sorted(kernels.glob("*/*.so"))
    verified = {so: so.read_bytes() for so in sos}
    # Someone (or a torn write) left other bytes at the exact path the entry will dlopen.
    victim, untouched = sos[0], sos[1]
    victim.write_bytes(b"\x7fELF not the verified library")
    before = untouched.stat().st_mtime_ns
    entry = _load(fast_artifact, kernels)
    assert victim.read_bytes() == verified[victim]
    # A file that already holds the verified bytes is not rewritten.
    assert untouched.stat().st_mtime_ns == before and untouched.read_bytes() == verified[untouched]
    assert _train_matches_eager(fast_artifact, entry)
