"""The op registry: every op is exercised, and its shape rule agrees with torch on small graphs."""

from __future__ import annotations

import pytest
import torch

from tezzeret.blueprint import BlueprintRejected, build_module, example_inputs, library, validate
from tezzeret.blueprint.analysis import analyze
from tezzeret.blueprint.ops import OPS

from blueprint_helpers import blueprint, node, tensor, to_ir

REQUIRED_BY_ISSUE = {
    "identity", "linear", "conv1d", "conv2d", "batch_norm", "layer_norm", "group_norm", "rms_norm", "relu", "gelu",
    "silu", "tanh", "sigmoid", "softmax", "dropout", "add", "mul", "matmul", "reshape", "flatten", "permute", "concat",
    "split", "mean", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "embedding", "scaled_dot_product_attention",
    "multi_head_attention", "moe",
    # Decoder and U-Net blocks.
    "conv_transpose1d", "conv_transpose2d", "upsample",
}

# Small single-purpose graphs for variants the library does not use.
CASES = {
    "batch_norm_rank3": blueprint([tensor("x", 4, 6)], [node("bn", "batch_norm", ["x"], momentum=0.2)], ["bn"]),
    "batch_norm_rank2_batch_min_2": blueprint(
        [{"name": "x", "dtype": "DTYPE_FLOAT32", "dims": [{"symbol": "b", "min": 2, "max": 4, "size": 2}, {"size": 6}]}],
        [node("bn", "batch_norm", ["x"])], ["bn"]),
    "mha_three_inputs": blueprint([tensor("q", 5, 8), tensor("k", 7, 6), tensor("v", 7, 4)],
                                  [node("a", "multi_head_attention", ["q", "k", "v"], num_heads=2, is_causal=True, bias=False)], ["a"]),
    "conv1d_stride_dilation": blueprint([tensor("x", 4, 20)],
                                        [node("c", "conv1d", ["x"], out_channels=6, kernel_size=3, stride=2, dilation=2, padding=1)], ["c"]),
    "conv2d_rect": blueprint([tensor("x", 3, 9, 7)],
                             [node("c", "conv2d", ["x"], out_channels=4, kernel_size=[3, 1], stride=[2, 1], padding=[0, 2])], ["c"]),
    "pools_with_padding": blueprint([tensor("x", 2, 9, 9)],
                                    [node("m", "max_pool2d", ["x"], kernel_size=3, stride=2, padding=1),
                                     node("a", "avg_pool2d", ["m"], kernel_size=[2, 3], stride=1)], ["a"]),
    "layer_norm_two_dims_no_bias": blueprint([tensor("x", 3, 4)], [node("n", "layer_norm", ["x"], normalized_dims=2, bias=False)], ["n"]),
    "group_norm_no_affine_rms_plain": blueprint([tensor("x", 6, 5)],
                                                [node("g", "group_norm", ["x"], num_groups=3, affine=False),
                                                 node("r", "rms_norm", ["g"], elementwise_affine=False)], ["r"]),
    "sdpa_scale_and_broadcast_matmul": blueprint([tensor("q", 2, 5, 4), tensor("w", 4, 3, batch=None)],
                                                 [node("a", "scaled_dot_product_attention", ["q", "q", "q"], scale=0.5),
                                                  node("m", "matmul", ["a", "w"])], ["m"]),
    "reductions_keepdim": blueprint([tensor("x", 3, 4)],
                                    [node("s", "sum", ["x"], dims=[1, 2], keepdim=True), node("m", "amax", ["x"], dims=[-1]),
                                     node("mean", "mean", ["m"], dims=[1])], ["s", "mean"]),
    "embedding_bag_sum_max": blueprint([tensor("ids", 5, dtype="DTYPE_INT64")],
                                       [node("s", "embedding_bag", ["ids"], num_embeddings=11, embedding_dim=3, mode="sum"),
                                        node("m", "embedding_bag", ["ids"], num_embeddings=13, embedding_dim=3, mode="max"),
                                        node("c", "concat", ["s", "m"], dim=1)], ["c"]),
    "moe_top1_relu": blueprint([tensor("x", 4, 6)], [node("e", "moe", ["x"], num_experts=3, top_k=1, hidden_dim=5, activation="relu")], ["e"]),
    "reshape_infer_and_flatten": blueprint([tensor("x", 2, 3, 4)],
                                           [node("r", "reshape", ["x"], shape=[0, -1, 4]), node("f", "flatten", ["r"], start_dim=1),
                                            node("t", "transpose", ["r"], dim0=-1, dim1=-2)], ["f", "t"]),
    "adaptive_pools": blueprint([tensor("x", 2, 6, 6)],
                                [node("a", "adaptive_avg_pool2d", ["x"], output_size=[3, 2]),
                                 node("m", "adaptive_max_pool2d", ["x"], output_size=3)], ["a", "m"]),
    "output_is_input": blueprint([tensor("x", 3)], [node("r", "relu", ["x"])], ["x", "r"]),
    "conv_transpose2d_stride_output_padding": blueprint(
        [tensor("x", 4, 5, 7)],
        [node("u", "conv_transpose2d", ["x"], out_channels=6, kernel_size=3, stride=2, padding=1, output_padding=1),
         node("g", "conv_transpose2d", ["u"], out_channels=4, kernel_size=[2, 3], stride=[1, 2], groups=2, dilation=[2, 1],
              padding=[0, 2], output_padding=[1, 0], bias=False)], ["g"]),
    "conv_transpose1d_groups": blueprint([tensor("x", 4, 10)],
                                         [node("u", "conv_transpose1d", ["x"], out_channels=6, kernel_size=4, stride=2, padding=1,
                                               groups=2)], ["u"]),
    "upsample_nearest_and_bilinear": blueprint(
        [tensor("x", 3, 5, 7)],
        [node("n", "upsample", ["x"], scale_factor=1.5),
         node("b", "upsample", ["n"], size=[9, 4], mode="bilinear", align_corners=True),
         node("s", "upsample", ["b"], scale_factor=[2.0, 0.5], mode="bilinear")], ["s"]),
    "upsample_1d_nearest": blueprint([tensor("x", 3, 5)],
                                     [node("a", "upsample", ["x"], scale_factor=2.5), node("b", "upsample", ["a"], size=4)],
                                     ["b"]),
}


def test_every_required_op_is_registered() -> None:
    assert REQUIRED_BY_ISSUE <= set(OPS)


def test_every_op_is_exercised() -> None:
    used = {n.op for lb in library() for n in lb.ir.nodes}
    used |= {n["op"] for doc in CASES.values() for n in doc["nodes"]}
    assert used == set(OPS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_small_graph_matches_torch(name: str) -> None:
    ir = to_ir(CASES[name])
    analysis = analyze(ir)
    summary = validate(ir)
    module = build_module(ir)
    assert sum(p.numel() for p in module.parameters()) == summary.parameters
    for batch in sorted({b for b in analysis.slot_infos}):
        xs = example_inputs(ir, batch or None)
        out = module(*xs)
        outs = out if isinstance(out, tuple) else (out,)
        assert [tuple(o.shape) for o in outs] == [analysis.slot_infos[batch][s].shape for s in analysis.output_slots]
        grads = [o for o in outs if o.requires_grad]
        if grads:
            sum(o.sum() for o in grads).backward()


def test_split_outputs_are_addressable() -> None:
    doc = blueprint([tensor("x", 6)], [node("p", "split", ["x"], sizes=[1, 2, 3]), node("c", "concat", ["p:2", "p:0", "p:1"])], ["c"])
    ir = to_ir(doc)
    x = example_inputs(ir)[0]
    y = build_module(ir)(x)
    torch.testing.assert_close(y, torch.cat([x[:, 3:], x[:, :1], x[:, 1:3]], dim=1))


def test_moe_matches_a_reference_loop() -> None:
    doc = blueprint([tensor("x", 4, 6)], [node("e", "moe", ["x"], num_experts=4, top_k=2, hidden_dim=5)], ["e"])
    ir = to_ir(doc)
    m = build_module(ir)
    x = example_inputs(ir)[0]
    moe = m.layers["n0"]
    probs = torch.softmax(moe.gate(x), dim=-1)
    want = torch.zeros_like(x)
    for b in range(x.shape[0]):
        for t in range(x.shape[1]):
            w, idx = torch.topk(probs[b, t], 2)
            w = w / w.sum()
            for weight, e in zip(w, idx.tolist(), strict=True):
                h = torch.nn.functional.gelu(x[b, t] @ moe.w1[e] + moe.b1[e])
                want[b, t] += weight * (h @ moe.w2[e] + moe.b2[e])
    torch.testing.assert_close(m(x), want)


def test_mha_matches_torch_reference() -> None:
    doc = blueprint([tensor("x", 5, 8)], [node("a", "multi_head_attention", ["x"], num_heads=2)], ["a"])
    ir = to_ir(doc)
    ours = build_module(ir).layers["n0"]
    ref = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
        ref.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        ref.out_proj.bias.copy_(ours.out_proj.bias)
    x = example_inputs(ir)[0]
    torch.testing.assert_close(ours(x), ref(x, x, x, need_weights=False)[0])


@pytest.mark.parametrize(
    ("nodes", "code", "field"),
    [
        ([node("c", "concat", ["x", "y"], dim=2)], "SHAPE_MISMATCH", "nodes[0].inputs[1]"),
        ([node("a", "scaled_dot_product_attention", ["x", "x", "y"])], "SHAPE_MISMATCH", "nodes[0].inputs[2]"),
        ([node("a", "multi_head_attention", ["x"], num_heads=3)], "BAD_ATTR", "nodes[0].attrs.num_heads"),
        ([node("s", "split", ["x"], sizes=[2, 2])], "SHAPE_MISMATCH", "nodes[0].attrs.sizes"),
        ([node("m", "moe", ["x"], num_experts=2, top_k=3, hidden_dim=4)], "BAD_ATTR", "nodes[0].attrs.top_k"),
        ([node("p", "max_pool2d", ["x"], kernel_size=2)], "SHAPE_MISMATCH", "nodes[0].inputs[0]"),
        ([node("r", "reshape", ["x"], shape=[0, -1, -1])], "BAD_ATTR", "nodes[0].attrs.shape"),
        ([node("f", "flatten", ["x"], start_dim=2, end_dim=1)], "BAD_ATTR", "nodes[0].attrs.start_dim"),
        ([node("s", "softmax", ["x"], dim=3)], "BAD_ATTR", "nodes[0].attrs.dim"),
        ([node("n", "layer_norm", ["x"], normalized_dims=4)], "BAD_ATTR", "nodes[0].attrs.normalized_dims"),
        ([node("g", "group_norm", ["x"], num_groups=4)], "BAD_ATTR", "nodes[0].attrs.num_groups"),
        ([node("m", "mean", ["x"], dims=[1, 1])], "BAD_ATTR", "nodes[0].attrs.dims"),
        ([node("u", "conv_transpose1d", ["x"], out_channels=4, kernel_size=3, output_padding=1)], "BAD_ATTR",
         "nodes[0].attrs.output_padding"),
        ([node("u", "conv_transpose1d", ["x"], out_channels=4, kernel_size=3, stride=2, output_padding=2)], "BAD_ATTR",
         "nodes[0].attrs.output_padding"),
        ([node("u", "conv_transpose1d", ["x"], out_channels=4, kernel_size=2, padding=11)], "SHAPE_MISMATCH",
         "nodes[0].attrs.padding"),
        ([node("u", "conv_transpose1d", ["x"], out_channels=5, kernel_size=3, groups=2)], "BAD_ATTR", "nodes[0].attrs.groups"),
        ([node("u", "conv_transpose1d", ["x"], out_channels=4, kernel_size=3, groups=4)], "BAD_ATTR", "nodes[0].attrs.groups"),
        ([node("u", "conv_transpose2d", ["x"], out_channels=4, kernel_size=3)], "SHAPE_MISMATCH", "nodes[0].inputs[0]"),
        ([node("u", "conv_transpose1d", ["x"], out_channels=4, kernel_size=3, in_channels=5)], "SHAPE_MISMATCH",
         "nodes[0].attrs.in_channels"),
        ([node("u", "upsample", ["x"])], "BAD_ATTR", "nodes[0].attrs.scale_factor"),
        ([node("u", "upsample", ["x"], scale_factor=2.0, size=[20])], "BAD_ATTR", "nodes[0].attrs.size"),
        ([node("u", "upsample", ["x"], scale_factor=0.05)], "BAD_ATTR", "nodes[0].attrs.scale_factor"),
        ([node("u", "upsample", ["x"], scale_factor=[2.0, 3.0])], "BAD_ATTR", "nodes[0].attrs.scale_factor"),
        ([node("u", "upsample", ["x"], size=[4, 5])], "BAD_ATTR", "nodes[0].attrs.size"),
        ([node("u", "upsample", ["x"], scale_factor=2.0, align_corners=True)], "BAD_ATTR", "nodes[0].attrs.align_corners"),
        ([node("u", "upsample", ["x"], scale_factor=2.0, mode="bilinear")], "SHAPE_MISMATCH", "nodes[0].inputs[0]"),
    ],
)
def test_rule_errors_name_the_field(nodes: list[dict], code: str, field: str) -> None:
    doc = blueprint([tensor("x", 6, 10), tensor("y", 5, 10)], nodes, [nodes[-1]["name"] if nodes[-1]["op"] != "split" else "s:0"])
    with pytest.raises(BlueprintRejected) as info:
        validate(to_ir(doc))
    assert (info.value.code, info.value.field) == (code, field), str(info.value)
    assert info.value.node == nodes[0]["name"]


def test_torch_spellings_are_accepted_and_do_not_change_the_digest() -> None:
    plain = blueprint(
        [tensor("x", 4, 8)],
        [node("n", "layer_norm", ["x"], normalized_dims=2), node("fc", "linear", ["n"], out_features=8),
         node("a", "multi_head_attention", ["fc"], num_heads=2), node("r", "rms_norm", ["a"])],
        ["r"],
    )
    spelled = blueprint(
        [tensor("x", 4, 8)],
        [node("n", "layernorm", ["x"], normalized_shape=[4, 8]), node("fc", "linear", ["n"], out_features=8, in_features=8),
         node("a", "mha", ["fc"], num_heads=2, embed_dim=8), node("r", "rmsnorm", ["a"], normalized_shape=[8])],
        ["r"],
    )
    assert validate(to_ir(plain)).digest == validate(to_ir(spelled)).digest


@pytest.mark.parametrize(
    ("nodes", "field"),
    [
        ([node("fc", "linear", ["x"], out_features=4, in_features=7)], "nodes[0].attrs.in_features"),
        ([node("c", "conv1d", ["x"], out_channels=4, kernel_size=1, in_channels=3)], "nodes[0].attrs.in_channels"),
        ([node("b", "batch_norm", ["x"], num_features=5)], "nodes[0].attrs.num_features"),
        ([node("n", "layer_norm", ["x"], normalized_shape=[6, 9])], "nodes[0].attrs.normalized_shape"),
        ([node("g", "group_norm", ["x"], num_groups=2, num_channels=4)], "nodes[0].attrs.num_channels"),
        ([node("a", "multi_head_attention", ["x"], num_heads=2, embed_dim=12)], "nodes[0].attrs.embed_dim"),
    ],
)
def test_inconsistent_restated_sizes_are_rejected(nodes: list[dict], field: str) -> None:
    with pytest.raises(BlueprintRejected) as info:
        validate(to_ir(blueprint([tensor("x", 6, 10)], nodes, [nodes[-1]["name"]])))
    assert (info.value.code, info.value.field) == ("SHAPE_MISMATCH", field), str(info.value)


def test_group_norm_of_single_values_is_refused() -> None:
    # Found by fuzzing: torch raises in training when a group holds one value.
    doc = blueprint([tensor("x", 1, 2, batch=None)], [node("g", "group_norm", ["x"], num_groups=2)], ["g"])
    with pytest.raises(BlueprintRejected) as info:
        validate(to_ir(doc))
    assert (info.value.code, info.value.field) == ("SHAPE_MISMATCH", "nodes[0].inputs[0]")
    ok = blueprint([tensor("x", 1, 2, batch=None)], [node("g", "group_norm", ["x"], num_groups=1)], ["g"])
    ir = to_ir(ok)
    build_module(ir)(*example_inputs(ir)).sum().backward()


def test_reduction_accepts_torch_keys_and_scalar_dims() -> None:
    a = blueprint([tensor("x", 3, 4)], [node("m", "mean", ["x"], dims=[1])], ["m"])
    b = blueprint([tensor("x", 3, 4)], [node("m", "mean", ["x"], dim=1, keepdims=False)], ["m"])
    assert validate(to_ir(a)).digest == validate(to_ir(b)).digest
    dup = blueprint([tensor("x", 3, 4)], [node("m", "mean", ["x"], dim=1, dims=[1])], ["m"])
    with pytest.raises(BlueprintRejected) as info:
        validate(to_ir(dup))
    assert info.value.code == "BAD_ATTR"


@pytest.mark.parametrize(
    ("attrs", "field", "text"),
    [
        ({"scale_factor": 0.0}, "nodes[0].attrs.scale_factor", "(0, 64]"),
        ({"scale_factor": -1.0}, "nodes[0].attrs.scale_factor", "(0, 64]"),
        ({"scale_factor": 65.0}, "nodes[0].attrs.scale_factor", "(0, 64]"),
        ({"scale_factor": [1.0, 2.0, 3.0]}, "nodes[0].attrs.scale_factor", "between 1 and 2"),
        ({"size": 0}, "nodes[0].attrs.size", "[1, 65536]"),
        ({"scale_factor": 2.0, "mode": "bicubic"}, "nodes[0].attrs.mode", "nearest, bilinear"),
        ({"scale_factor": 2.0, "align_corners": 1}, "nodes[0].attrs.align_corners", "must be bool"),
    ],
)
def test_upsample_attribute_bounds(attrs: dict, field: str, text: str) -> None:
    doc = blueprint([tensor("x", 3, 5, 7)], [node("u", "upsample", ["x"], **attrs)], ["u"])
    with pytest.raises(BlueprintRejected) as info:
        validate(to_ir(doc))
    assert (info.value.code, info.value.node, info.value.field) == ("BAD_ATTR", "u", field), str(info.value)
    assert text in str(info.value)


def test_upsample_spellings_share_a_digest() -> None:
    # One value stands for every spatial dimension: a scalar, a one-element list and an equal
    # per-dimension list are the same computation, so they are one canonical form.
    def digest_of(**attrs: object) -> str:
        return validate(to_ir(blueprint([tensor("x", 3, 5, 7)], [node("u", "upsample", ["x"], **attrs)], ["u"]))).digest

    assert digest_of(scale_factor=2.0) == digest_of(scale_factor=2) == digest_of(scale_factor=[2.0, 2.0], mode="nearest")
    assert digest_of(size=[6, 6]) == digest_of(size=6)
    assert digest_of(scale_factor=2.0, mode="bilinear") == digest_of(scale_factor=2.0, mode="bilinear", align_corners=False)
    assert len({digest_of(scale_factor=2.0), digest_of(scale_factor=[2.0, 3.0]), digest_of(size=[10, 14]),
                digest_of(scale_factor=2.0, mode="bilinear"),
                digest_of(scale_factor=2.0, mode="bilinear", align_corners=True)}) == 5


def test_conv_transpose_matches_torch_and_counts_parameters() -> None:
    doc = blueprint([tensor("x", 4, 5, 7)],
                    [node("u", "conv_transpose2d", ["x"], out_channels=6, kernel_size=3, stride=2, padding=1, output_padding=1,
                          groups=2)], ["u"])
    ir = to_ir(doc)
    module = build_module(ir)
    layer = module.layers["n0"]
    assert isinstance(layer, torch.nn.ConvTranspose2d)
    assert (layer.stride, layer.padding, layer.output_padding, layer.groups) == ((2, 2), (1, 1), (1, 1), 2)
    x = example_inputs(ir)[0]
    torch.testing.assert_close(module(x), torch.nn.functional.conv_transpose2d(
        x, layer.weight, layer.bias, stride=2, padding=1, output_padding=1, groups=2))
    assert validate(ir).parameters == 4 * (6 // 2) * 9 + 6


def test_upsample_matches_interpolate() -> None:
    doc = blueprint([tensor("x", 3, 5, 7)],
                    [node("u", "upsample", ["x"], scale_factor=[1.5, 2.0], mode="bilinear", align_corners=True)], ["u"])
    ir = to_ir(doc)
    x = example_inputs(ir)[0]
    want = torch.nn.functional.interpolate(x, scale_factor=(1.5, 2.0), mode="bilinear", align_corners=True)
    torch.testing.assert_close(build_module(ir)(x), want)
