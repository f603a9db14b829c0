"""Dispatch of a loaded FAST artifact (slow: needs the shared compiled artifact)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tz_compile_support import TINY_MLP, ir_of

from tezzeret.blueprint import build_module, example_inputs
from tezzeret.loader import NoMatchingEntry, load

pytestmark = pytest.mark.slow


def test_calls_without_an_entry_are_named_errors_or_eager(fast_artifact: Path) -> None:
    module = load(fast_artifact, serve="compiled", trust_unsigned=True)
    ir = ir_of(TINY_MLP)
    (x8,) = example_inputs(ir, 8)
    assert torch.allclose(module(x8), build_module(ir)(x8), atol=1e-5)
    assert module.calls_compiled == 1
    with pytest.raises(NoMatchingEntry) as err:
        module(torch.randn(3, 32))
    text = str(err.value)
    assert "[(8, 32) float32] train" in text and "[(4, 32) float32] train" in text and "(3, 32)" in text
    with torch.no_grad(), pytest.raises(NoMatchingEntry, match="no_grad"):
        module(x8)
    # LayerNorm/Linear/GELU never read `training`, so Dynamo installed no guard on it: eval mode
    # may run the same entry, and must give eager's eval-mode answer.
    module.eval()
    reference = build_module(ir).eval()
    assert torch.allclose(module(x8), reference(x8), atol=1e-5)
    module.train()
    threads = torch.get_num_threads()
    assert module.num_threads == threads  # compiled in this process, same count
    torch.set_num_threads(threads + 1)
    try:
        with pytest.raises(NoMatchingEntry, match=f"compiled for {threads} intra-op thread"):
            module(x8)
    finally:
        torch.set_num_threads(threads)
    assert module(x8).shape == (8, 32)
    eager_ok = load(fast_artifact, fallback="eager", serve="compiled", trust_unsigned=True)
    assert eager_ok(torch.randn(3, 32)).shape == (3, 32)
    with torch.no_grad():
        assert eager_ok(x8).shape == (8, 32)
    assert eager_ok.calls_eager == 2 and eager_ok.calls_compiled == 0


def test_auto_serving_follows_the_manifest(fast_artifact: Path) -> None:
    module = load(fast_artifact, trust_unsigned=True)  # serve="auto"
    (x8,) = example_inputs(ir_of(TINY_MLP), 8)
    module(x8)
    entry = next(e for e in module.entries if e.key == "b8-train")
    if entry.serve_compiled:
        assert module.calls_compiled == 1
    else:
        assert module.calls_eager == 1  # eager was measured faster for this entry
