"""KernelProvider: eager at once, compiled when an artifact lands, refusals stay eager."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from tz_compile_support import TINY_MLP, ir_of

from tezzeret.blueprint import digest, example_inputs
from tezzeret.compile import compile_blueprint
from tezzeret.loader import KernelProvider


def _train_step(module: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor) -> float:
    opt.zero_grad()
    loss = module(x).square().mean()
    loss.backward()
    opt.step()
    return float(loss.detach())


def test_get_returns_eager_at_once_and_caches(tmp_path: Path) -> None:
    ir = ir_of(TINY_MLP)
    with KernelProvider() as provider:
        module = provider.get(ir)
        assert module is not None and provider.get(ir) is module
        assert provider.get(digest(ir)) is module
        assert provider.state(digest(ir)).mode == "eager"
        (x,) = example_inputs(ir)
        assert module(torch.randn(5, 32)).shape == (5, 32)  # any shape: eager
        assert module(x).shape == (8, 32)
        assert module.calls_eager == 2


def test_unknown_digest_fetches_in_the_background(tmp_path: Path) -> None:
    ir = ir_of(TINY_MLP)
    path = compile_blueprint(ir, "emergency", tmp_path).path
    asked: list[str] = []
    release = threading.Event()

    def fetch(d: str) -> Path | None:
        asked.append(d)
        release.wait(30)  # a slow store: get() must not wait for it
        return path

    with KernelProvider(fetch, trust_unsigned=True) as provider:
        assert provider.get(digest(ir)) is None  # not known yet, returned at once
        release.set()
        state = provider.wait(digest(ir), timeout=60)
        assert state.mode == "compiled" and state.artifact_id == path.name.removesuffix(".tzart")
        module = provider.get(digest(ir))
        assert module is not None and module.entries and asked == [digest(ir)]


def test_refused_artifact_keeps_the_module_eager(tmp_path: Path) -> None:
    ir = ir_of(TINY_MLP)
    path = compile_blueprint(ir, "emergency", tmp_path).path
    data = bytearray(path.read_bytes())
    data[3] ^= 0xFF  # the magic
    path.write_bytes(bytes(data))
    with KernelProvider(trust_unsigned=True) as provider:
        module = provider.get(ir)
        state = provider.offer(digest(ir), path).result(timeout=60)
        assert state.mode == "refused" and "ARTIFACT_CORRUPT" in state.reason
        assert module(torch.randn(2, 32)).shape == (2, 32)
        other = compile_blueprint(ir, "emergency", tmp_path / "x").path
        wrong = provider.offer("f" * 64, other).result(timeout=60)
        assert wrong.mode == "refused" and "LOADER_BLUEPRINT_MISMATCH" in wrong.reason
        assert module(torch.randn(2, 32)).shape == (2, 32) and not module.entries


def test_provider_requiring_signatures_refuses_unsigned(tmp_path: Path) -> None:
    from tezzeret.store.signing import SigningKey

    ir = ir_of(TINY_MLP)
    key = SigningKey.load_or_create(tmp_path / "keys")
    path = compile_blueprint(ir, "emergency", tmp_path).path
    with KernelProvider(public_key=key.public_key_bytes) as provider:
        provider.get(ir)
        state = provider.offer(digest(ir), path).result(timeout=60)
        assert state.mode == "refused" and "LOADER_UNSIGNED" in state.reason


@pytest.mark.slow
def test_switches_the_same_parameters_to_compiled_entries(fast_artifact: Path) -> None:
    ir = ir_of(TINY_MLP)
    with KernelProvider(serve="compiled", trust_unsigned=True) as provider:
        module = provider.get(ir)
        assert module is not None
        params = list(module.parameters())
        opt = torch.optim.SGD(params, lr=0.05)
        (x8,) = example_inputs(ir, 8)
        before = _train_step(module, opt, x8)  # eager, while nothing is offered
        future = provider.offer(digest(ir), fast_artifact)
        state = future.result(timeout=120)
        assert state.mode == "compiled", state.reason
        assert module.compiled and list(module.parameters()) == params
        snapshot = [p.detach().clone() for p in params]
        after = _train_step(module, opt, x8)
        assert module.calls_compiled == 1
        assert any(not torch.equal(p, s) for p, s in zip(params, snapshot, strict=True))
        assert after < before  # the loop's optimizer kept training the same weights
        assert module(torch.randn(3, 32)).shape == (3, 32)  # no entry: eager
        assert module.calls_eager == 2


def test_a_missing_artifact_is_asked_for_again_only_after_retry_s(tmp_path: Path) -> None:
    ir = ir_of(TINY_MLP)
    asked: list[str] = []

    def fetch(d: str) -> Path | None:
        asked.append(d)
        return None

    with KernelProvider(fetch, retry_s=3600) as provider:
        module = provider.get(ir)
        assert module is not None
        assert provider.wait(digest(ir), timeout=30).reason == "no artifact available yet"
        for _ in range(5):
            assert provider.get(ir) is module
        assert asked == [digest(ir)]
    with KernelProvider(fetch, retry_s=0) as provider:
        provider.get(ir)
        provider.wait(digest(ir), timeout=30)
        provider.get(ir)
        provider.wait(digest(ir), timeout=30)
        assert len(asked) == 3


def test_a_refused_offer_never_hides_what_is_still_served(tmp_path: Path) -> None:
    ir = ir_of(TINY_MLP)
    good = compile_blueprint(ir, "emergency", tmp_path / "good").path
    bad = compile_blueprint(ir, "emergency", tmp_path / "bad").path
    data = bytearray(bad.read_bytes())
    data[3] ^= 0xFF
    bad.write_bytes(bytes(data))
    with KernelProvider(trust_unsigned=True) as provider:
        module = provider.get(ir)
        assert provider.offer(digest(ir), good).result(timeout=60).mode == "compiled"
        state = provider.offer(digest(ir), bad).result(timeout=60)
        # Still serving the first artifact's entries: the state says so, and names the refusal.
        assert state.mode == "compiled" and state.artifact_id == good.name.removesuffix(".tzart")
        assert "ARTIFACT_CORRUPT" in state.refused and module is not None and module.entries
        assert provider.state(digest(ir)) == state
