"""The built-in library: every blueprint validates, builds, runs forward and backward at every
declared batch (smallest, example, largest), and traces whole with `torch.compile(fullgraph=True)`."""

from __future__ import annotations

import pytest
import torch

from tezzeret.blueprint import (
    BlueprintModule,
    LibraryBlueprint,
    batch_range,
    build_module,
    example_inputs,
    example_training_step,
    input_shapes,
    library,
    library_blueprint,
    validate,
)
from tezzeret.blueprint.analysis import analyze
from tezzeret.leyline import pb

LIBRARY = library()
NAMES = [lb.name for lb in LIBRARY]
BY_NAME = {lb.name: lb for lb in LIBRARY}

# The list of blueprint families, each with the library entry that realises it.
FAMILIES = {
    "MLP": "mlp_512",
    "residual MLP": "residual_mlp_256",
    "SwiGLU MLP": "swiglu_mlp_512",
    "low-rank adapter": "lora_adapter_1024",
    "conv-BN-ReLU": "conv_bn_relu_32x64",
    "depthwise-separable conv": "depthwise_separable_64",
    "squeeze-excitation": "squeeze_excitation_64",
    "bottleneck residual conv": "bottleneck_residual_128",
    "channel attention": "channel_attention_64",
    "spatial attention": "spatial_attention_64",
    "MHSA 4 heads": "mhsa_4h_256",
    "MHSA 8 heads": "mhsa_8h_512",
    "pre-norm transformer": "prenorm_transformer_256",
    "cross-attention": "cross_attention_256",
    "top-2 MoE": "moe_top2_256",
    "embedding bag": "embedding_bag_pool_256",
    "U-Net decoder": "unet_decoder_64",
}


def test_library_size_and_families() -> None:
    assert len(LIBRARY) >= 16
    assert set(FAMILIES.values()) <= set(NAMES)
    assert len(BY_NAME["cross_attention_256"].ir.inputs) == 2
    moe = [n for n in BY_NAME["moe_top2_256"].ir.nodes if n.op == "moe"]
    assert [a.i for a in moe[0].attrs if a.key == "top_k"] == [2]
    heads = {name: [a.i for n in BY_NAME[name].ir.nodes for a in n.attrs if a.key == "num_heads"] for name in ("mhsa_4h_256", "mhsa_8h_512")}
    assert heads == {"mhsa_4h_256": [4], "mhsa_8h_512": [8]}


@pytest.mark.parametrize("lb", LIBRARY, ids=NAMES)
def test_metadata(lb: LibraryBlueprint) -> None:
    meta = lb.ir.metadata
    assert lb.path.stem == meta.name == lb.name
    assert meta.category and meta.description and meta.blueprint_id
    assert meta.tier == pb.TIER_SAFE and not meta.quarantine_only
    assert 0 <= meta.risk <= 0.5 and 0 <= meta.tamiyo_interest <= 1 and meta.value > 0
    assert meta.init_seed > 0
    lo, hi = batch_range(lb.ir)
    assert (lo, hi) == (1, 64)
    assert library_blueprint(lb.name) == lb.ir


def test_digests_are_distinct() -> None:
    digests = [validate(lb.ir).digest for lb in LIBRARY]
    assert len(set(digests)) == len(digests)
    assert all(len(d) == 64 and int(d, 16) >= 0 for d in digests)


def test_unknown_library_name() -> None:
    with pytest.raises(KeyError, match="mlp_512"):
        library_blueprint("no_such_blueprint")


def _outputs(y: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return y if isinstance(y, tuple) else (y,)


@pytest.mark.parametrize("lb", LIBRARY, ids=NAMES)
def test_forward_backward_every_declared_batch(lb: LibraryBlueprint) -> None:
    analysis = analyze(lb.ir)
    summary = validate(lb.ir)
    module = build_module(lb.ir)
    assert type(module) is BlueprintModule
    params = list(module.parameters())
    assert sum(p.numel() for p in params) == summary.parameters
    lo, hi = batch_range(lb.ir)
    for batch in sorted({lo, summary.example_batch, hi}):
        xs = example_inputs(lb.ir, batch)
        assert [tuple(x.shape) for x in xs] == input_shapes(lb.ir, batch)
        module.zero_grad()
        outs = _outputs(module(*xs))
        # Shapes the validator inferred are the shapes torch produces.
        expected = [analysis.slot_infos[batch][s].shape for s in analysis.output_slots]
        assert [tuple(o.shape) for o in outs] == expected
        loss = sum((o.float() ** 2).mean() for o in outs)
        loss.backward()
        assert torch.isfinite(loss)
        for name, p in module.named_parameters():
            assert p.grad is not None, name
            assert torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("lb", LIBRARY, ids=NAMES)
def test_every_intermediate_shape_matches_the_validator(lb: LibraryBlueprint) -> None:
    analysis = analyze(lb.ir)
    module = build_module(lb.ir).eval()
    seen: dict[str, list[tuple[int, ...]]] = {}
    for key, layer in module.layers.items():
        layer.register_forward_hook(
            lambda _m, _i, out, key=key: seen.__setitem__(key, [tuple(t.shape) for t in _outputs(out)])
        )
    with torch.no_grad():
        module(*example_inputs(lb.ir))
    infos = analysis.slot_infos[analysis.example_batch]
    for step in analysis.steps:
        assert seen[f"n{step.position}"] == [infos[s].shape for s in step.out_slots], step.name


@pytest.mark.parametrize("lb", LIBRARY, ids=NAMES)
def test_traces_whole_with_fullgraph(lb: LibraryBlueprint) -> None:
    torch._dynamo.reset()
    module = build_module(lb.ir)
    compiled = torch.compile(module, fullgraph=True, backend="eager")
    xs = example_inputs(lb.ir)
    torch.manual_seed(0)
    got = _outputs(compiled(*xs))
    torch.manual_seed(0)
    want = _outputs(module(*xs))
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)
    torch._dynamo.reset()


def test_the_example_training_step_trains() -> None:
    ir = library_blueprint("mlp_512")
    module = build_module(ir)
    before = [p.detach().clone() for p in module.parameters()]
    opt = torch.optim.SGD(module.parameters(), lr=0.05)
    inputs = example_inputs(ir)
    first = float(example_training_step(module, opt, inputs).detach())
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, module.parameters()))
    for _ in range(4):
        last = float(example_training_step(module, opt, inputs).detach())
    assert last < first
