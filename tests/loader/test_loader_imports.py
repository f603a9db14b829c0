"""The training side stays small: loading an artifact imports the artifact contract, the blueprint
builder and torch, and nothing of the compiler, the store, the forge or the configuration system."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tz_compile_support import TINY_MLP, ir_of

from tezzeret.compile import compile_blueprint
from tezzeret.store import SigningKey, sign_artifact_file

FORBIDDEN = ("tezzeret.store", "tezzeret.compile", "tezzeret.forge", "tezzeret.config", "tezzeret.api",
             "tezzeret.sandbox", "tezzeret.wal", "sqlite3", "pydantic_settings")

_CONSUMER = """
import json, sys
import torch
from tezzeret.artifact.file import read_manifest
from tezzeret.loader import KernelProvider, load
key = bytes.fromhex(sys.argv[2])
module = load(sys.argv[1], public_key=key, fallback="eager")
module(torch.randn(8, 32)).sum().backward()
manifest, _, _ = read_manifest(sys.argv[1])
with KernelProvider(public_key=key) as provider:
    provider.get(manifest.blueprint)
    state = provider.offer(manifest.blueprint_digest, sys.argv[1]).result(timeout=60)
    assert state.mode == "compiled", state
print(json.dumps(sorted(sys.modules)))
"""

def test_loading_imports_no_compiler_store_forge_or_config(tmp_path: Path) -> None:
    key = SigningKey.load_or_create(tmp_path / "keys")
    path = compile_blueprint(ir_of(TINY_MLP), "emergency", tmp_path / "out").path
    sign_artifact_file(path, key)
    out = subprocess.run(
        [sys.executable, "-c", _CONSUMER, str(path), key.public_key_bytes.hex()],
        capture_output=True, text=True, check=True, timeout=300,
    )
    modules = json.loads(out.stdout.strip().splitlines()[-1])
    loaded = [m for m in modules if m.startswith(FORBIDDEN)]
    assert loaded == [], f"the loader pulled in {loaded}"
    assert "tezzeret.artifact.file" in modules and "tezzeret.blueprint.module" in modules
