"""The op registry: every op a BlueprintIR may use, with its attribute schema, shape rule, cost
model and torch builder.

Owns `OPS` (the allowlist), `TensorInfo` (a concrete shape and dtype on one edge) and the per-op
rules. Shape rules work on concrete sizes: the validator runs them once per representative batch
size (min, example, max), which checks symbolic batches without a symbolic algebra. This module
must never import torch at import time (validation runs in processes that do not load torch);
builders import `layers` lazily.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, TypeVar

from tezzeret.blueprint.attrs import (
    INT_LIMIT,
    AttrSpec,
    Attrs,
    AttrValue,
    Kind,
    bool_attr,
    float_attr,
    floats_attr,
    int_attr,
    ints_attr,
    optional_floats_attr,
    optional_ints_attr,
    pair_attr,
    single_attr,
    str_attr,
)
from tezzeret.leyline import pb

if TYPE_CHECKING:
    from torch import nn

FLOAT_DTYPES: frozenset[int] = frozenset(
    {pb.DTYPE_FLOAT32, pb.DTYPE_FLOAT16, pb.DTYPE_BFLOAT16, pb.DTYPE_FLOAT64}
)
INDEX_DTYPES: frozenset[int] = frozenset({pb.DTYPE_INT64, pb.DTYPE_INT32})
DTYPE_BYTES: Mapping[int, int] = MappingProxyType({
    pb.DTYPE_FLOAT32: 4,
    pb.DTYPE_FLOAT16: 2,
    pb.DTYPE_BFLOAT16: 2,
    pb.DTYPE_FLOAT64: 8,
    pb.DTYPE_INT64: 8,
    pb.DTYPE_INT32: 4,
})


@dataclass(frozen=True)
class TensorInfo:
    """The concrete shape and dtype (a `pb.DType` value) of one value at one batch size."""

    shape: tuple[int, ...]
    dtype: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * DTYPE_BYTES.get(self.dtype, 4)


class RuleError(Exception):
    """Raised by a shape rule; the validator turns it into `BlueprintRejected` naming the node."""

    def __init__(self, message: str, *, code: str = "SHAPE_MISMATCH", field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field = field


@dataclass(frozen=True)
class RuleContext:
    """What a rule may know beyond its inputs: the dtype parameters and embeddings produce."""

    compute_dtype: int


Infer = Callable[[Attrs, Sequence[TensorInfo], RuleContext], list[TensorInfo]]
Count = Callable[[Attrs, Sequence[TensorInfo]], int]
Flops = Callable[[Attrs, Sequence[TensorInfo], Sequence[TensorInfo]], int]
Build = Callable[[Attrs, Sequence[TensorInfo]], "nn.Module"]
Normalize = Callable[[dict[str, AttrValue]], dict[str, AttrValue]]


def _zero(attrs: Attrs, ins: Sequence[TensorInfo]) -> int:
    return 0


def _elementwise(attrs: Attrs, ins: Sequence[TensorInfo], outs: Sequence[TensorInfo]) -> int:
    return sum(o.numel for o in outs)


@dataclass(frozen=True)
class OpSpec:
    name: str
    doc: str
    attrs: Mapping[str, AttrSpec]
    min_inputs: int
    max_inputs: int
    infer: Infer
    build: Build
    params: Count = _zero
    flops: Flops = _elementwise
    # Ops whose input 0 holds indices: how many distinct indices they accept (for example inputs).
    index_bound: Callable[[Attrs], int] | None = None
    multi_output: bool = False
    normalize: Normalize | None = None
    # Other spellings of attribute keys (torch's), resolved when attributes are parsed.
    attr_aliases: Mapping[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Rule helpers
# ---------------------------------------------------------------------------------------------


def _need(cond: bool, message: str, *, field: str | None = None, code: str = "SHAPE_MISMATCH") -> None:
    if not cond:
        raise RuleError(message, code=code, field=field)


def _float(info: TensorInfo, i: int = 0) -> None:
    _need(
        info.dtype in FLOAT_DTYPES,
        f"input {i} has dtype {pb.DType.Name(info.dtype)}; this op needs a floating-point tensor",
        field=f"inputs[{i}]",
        code="BAD_DTYPE",
    )


def _rank(info: TensorInfo, lo: int, hi: int, what: str, i: int = 0) -> None:
    _need(
        lo <= len(info.shape) <= hi,
        f"input {i} has shape {list(info.shape)} (rank {len(info.shape)}); {what}",
        field=f"inputs[{i}]",
    )


def _dim(d: int, rank: int, key: str) -> int:
    _need(-rank <= d < rank, f"{key}={d} is out of range for a rank-{rank} tensor", field=key, code="BAD_ATTR")
    return d % rank


def _same_dtype(ins: Sequence[TensorInfo]) -> None:
    for i, info in enumerate(ins[1:], start=1):
        _need(
            info.dtype == ins[0].dtype,
            f"input {i} is {pb.DType.Name(info.dtype)} but input 0 is {pb.DType.Name(ins[0].dtype)}",
            field=f"inputs[{i}]",
            code="BAD_DTYPE",
        )


def _broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        _need(
            x == y or x == 1 or y == 1,
            f"shapes {list(a)} and {list(b)} do not broadcast (dimension -{i}: {x} vs {y})",
            field="inputs[1]",
        )
        out.append(max(x, y))
    return tuple(reversed(out))


def _conv_len(size: int, k: int, s: int, p: int, d: int, key: str) -> int:
    out = (size + 2 * p - d * (k - 1) - 1) // s + 1
    _need(
        out >= 1,
        f"a spatial size of {size} with kernel {k}, stride {s}, padding {p}, dilation {d} "
        f"gives an empty output; shrink the kernel or add padding",
        field=key,
    )
    return out


def _I(doc: str = "", lo: float | None = 1, hi: float | None = INT_LIMIT, default: int | None = None, required: bool = True) -> AttrSpec:
    if required:
        return AttrSpec("int", lo=lo, hi=hi, doc=doc)
    return AttrSpec("int", default=default, lo=lo, hi=hi, doc=doc)


def _pair(default: tuple[int, ...] | None = None, lo: int = 1, hi: int = 1 << 16, n: int = 2, required: bool = False) -> AttrSpec:
    if required:
        return AttrSpec("ints", lo=lo, hi=hi, min_len=n, max_len=n, expand=n)
    return AttrSpec("ints", default=default, lo=lo, hi=hi, min_len=n, max_len=n, expand=n)


def _restates(doc: str, kind: Kind = "int") -> AttrSpec:
    return AttrSpec(kind, default=None, lo=1, hi=INT_LIMIT, redundant=True, doc=doc)


def _listed(value: object) -> object:
    """A value as a message shows it: tuples as lists, as the JSON form spells them."""
    return list(value) if isinstance(value, tuple) else value


def _consistent(attrs: Attrs, key: str, actual: int | tuple[int, ...]) -> None:
    given = attrs.get(key)
    _need(
        given is None or given == actual,
        f"{key}={_listed(given)} does not match the input, which gives "
        f"{_listed(actual)}; drop the attribute or fix it",
        field=key,
    )


REDUCE_ALIASES: Mapping[str, str] = MappingProxyType({"dim": "dims", "keepdims": "keepdim"})
EPS = AttrSpec("float", default=1e-5, lo=0.0, hi=1.0, lo_open=True, doc="numerical epsilon")
BOOL_T = AttrSpec("bool", default=True)
BOOL_F = AttrSpec("bool", default=False)


def _layers():  # noqa: ANN202 - lazy import keeps torch out of validation-only processes
    from tezzeret.blueprint import layers

    return layers


# ---------------------------------------------------------------------------------------------
# Elementwise and activations
# ---------------------------------------------------------------------------------------------


def _unary_float(attrs: Attrs, ins: Sequence[TensorInfo], ctx: RuleContext) -> list[TensorInfo]:
    _float(ins[0])
    return [ins[0]]


def _unary_any(attrs: Attrs, ins: Sequence[TensorInfo], ctx: RuleContext) -> list[TensorInfo]:
    return [ins[0]]


def _binary(attrs: Attrs, ins: Sequence[TensorInfo], ctx: RuleContext) -> list[TensorInfo]:
    _float(ins[0], 0)
    _float(ins[1], 1)
    _same_dtype(ins)
    return [TensorInfo(_broadcast(ins[0].shape, ins[1].shape), ins[0].dtype)]


def _softmax(attrs: Attrs, ins: Sequence[TensorInfo], ctx: RuleContext) -> list[TensorInfo]:
    _float(ins[0])
    _dim(int_attr(attrs, "dim"), len(ins[0].shape), "dim")
    return [ins[0]]


# ---------------------------------------------------------------------------------------------
# Dense layers
# ---------------------------------------------------------------------------------------------


def _linear(attrs: Attrs, ins: Sequence[TensorInfo], ctx: RuleContext) -> list[TensorInfo]:
    x = ins[0]
    _float(x)
    _rank(x, 1, 8, "linear needs at least one dimension (the features)")
    _consistent(attrs, "in_features", x.shape[-1])
    return [TensorInfo(x.shape[:-1] + (int_attr(attrs, "out_features"),), x.dtype)]


def _linear_params(attrs: Attrs, ins: Sequence[TensorInfo]) -> int:
    fin, fout = ins[0].shape[-1], int_attr(attrs, "out_features")
    return fin * fout + (fout if bool_attr(attrs, "bias") else 0)


def _linear_flops(attrs: Attrs, ins: Sequence[TensorInfo], outs: Sequence[TensorInfo]) -> int:
    return 2 * ins[0].numel * int_attr(attrs, "out_features")


def _build_linear(attrs: Attrs, ins: Sequence[TensorInfo]) -> nn.Module:
    from torch import nn

    return nn.Linear(ins[0].shape[-1], int_attr(attrs, "out_features"), bias=bool_attr(attrs, "bias"))


def _matmul(attrs: Attrs, ins: Sequence[TensorInfo], ctx: RuleContext) -> list[TensorInfo]:
    a, b = ins
    _float(a, 0)
    _float(b, 1)
    _same_dtype(ins)
    _rank(a, 2, 8, "matmul needs rank >= 2 on both sides", 0)
    _rank(b, 2, 8, "matmul needs rank >= 2 on both sides", 1)
    _need(
        a.shape[-1] == b.shape[-2],
        f"matmul of {list(a.shape)} by {list(b.shape)}: inner sizes {a.shape[-1]} and {b.shape[-2]} differ",
        field="inputs[1]",
    )
    batch = _broadcast(a.shape[:-2], b.shape[:-2])
    return [TensorInfo(batch + (a.shape[-2], b.shape[-1]), a.dtype)]


def _matmul_flops(attrs: Attrs, ins: Sequence[TensorInfo], outs: Sequence[TensorInfo]) -> int:
    return 2 * outs[0].numel * ins[0].shape[-1]


# ---------------------------------------------------------------------------------------------
# Convolutions and pooling
# ---------------------------------------------------------------------------------------------


def _conv(nd: int) -> Infer:
    def rule(attrs: Attrs, ins: Sequence[TensorInfo], ctx: RuleContext) -> list[TensorInfo]:
        x = ins[0]
        _float(x)
        _rank(x, nd + 2, nd + 2, f"conv{nd}d needs [batch, channels, {'length' if nd == 1 else 'height, width'}]")
        cin, cout, groups = x.shape[1], int_attr(attrs, "out_channels"), int_attr(attrs, "groups")
        _consistent(attrs, "in_channels", cin)
        _need(cin % groups == 0, f"{cin} input channels are not divisible by groups={groups}", field="groups", code="BAD_ATTR")
        _need(cout % groups == 0, f"out_channels={cout} is not divisible by groups={groups}", field="groups", code="BAD_ATTR")
        k, s, p, d = (ints_attr(attrs, key) for key in ("kernel_size", "stride", "padding", "dilation"))
        spatial = tuple(
            _conv_len(x.shape[2 + i], k[i], s[i], p[i], d[i], "kernel_size")
            for i in range(nd)
        )
        return [TensorInfo((x.shape[0], cout) + spatial, x.dtype)]

    return rule


def _conv_params(attrs: Attrs, ins: Sequence[TensorInfo]) -> int:
    cin, cout, groups = ins[0].shape[1], int_attr(attrs, "out_channels"), int_attr(attrs, "groups")
    return cout * (cin // groups) * math.prod(ints_attr(attrs, "kernel_size")) + (cout if bool_attr(attrs, "bias") else 0)


def _conv_flops(attrs: Attrs, ins: Sequence[TensorInfo], outs: Sequence[TensorInfo]) -> int:
    cin, groups = ins[0].shape[1], int_attr(attrs, "groups")
    return 2 * outs[0].numel * (cin // groups) * math.prod(ints_attr(attrs, "kernel_size"))


_CONV_GEOMETRY = ("kernel_size", "stride", "padding", "dilation")


def _build_conv(nd: int) -> Build:
    def build(attrs: Attrs, ins: Sequence[TensorInfo]) -> nn.Module:
        from torch import nn

        cin, cout = ins[0].shape[1], int_attr(attrs, "out_channels")
        groups, bias = int_attr(attrs, "groups"), bool_attr(attrs, "bias")
        # Split by rank: torch types a 1-d layer's geometry as tuple[int], a 2-d one's as a pair.
        if nd == 1:
            k1, s1, p1, d1 = (single_attr(attrs, key) for key in _CONV_GEOMETRY)
            return nn.Conv1d(cin, cout, kernel_size=k1, stride=s1, padding=p1, dilation=d1, groups=groups, bias=bias)
        k2, s2, p2, d2 = (pair_attr(attrs, key) for key in _CONV_GEOMETRY)
        return nn.Conv2d(cin, cout, kernel_size=k2, stride=s2, padding=p2, dilation=d2, groups=groups, bias=bias)

    return build


def _conv_attrs(nd: int) -> dict[str, AttrSpec]:
    return {
        "out_channels": _I("number of output channels"),
        "kernel_size": _pair(required=True, n=nd, hi=64),
        "stride": _pair((1,) * nd, n=nd, hi=64),
        "padding": _pair((0,) * nd, lo=0, n=nd, hi=64),
        "dilation": _pair((1,) * nd, n=nd, hi=64),
        "groups": _I("channel groups (= in_channels for depthwise)", default=1, required=False),
        "bias": BOOL_T,
        "in_channels": _restates("input channels"),
    }


def _conv_transpose_len(size: int, k: int, s: int, p: int, op: int, d: int) -> int:
    out = (size - 1) * s - 2 * p + d * (k - 1) + op + 1
    _need(
        out >= 1,
        f"a spatial size of {size} with kernel {k}, stride {s}, padding {p}, output_padding {op}, "
        f"dilation {d} gives an empty output; lower the padding",
        field="padding",
    )
    return out


def _conv_transpose(nd: int) -> Infer:
    def rule(attrs: Attrs, ins: Sequence[TensorInfo], ctx: RuleContext) -> list[TensorInfo]:
        x = ins[0]
        _float(x)
        _rank(x, nd + 2, nd + 2, f"conv_transpose{nd}d needs [batch, channels, {'length' if nd == 1 else 'height, width'}]")
        cin, cout, groups = x.shape[1], int_attr(attrs, "out_channels"), int_attr(attrs, "groups")
        _consistent(attrs, "in_channels", cin)
        _need(cin % groups == 0, f"{cin} input channels are not divisible by groups={groups}", field="groups", code="BAD_ATTR")
        _need(cout % groups == 0, f"out_channels={cout} is not divisible by groups={groups}", field="groups", code="BAD_ATTR")
        k, s, p, op, d = (ints_attr(attrs, key) for key in ("kernel_size", "stride", "padding", "output_padding", "dilation"))
        for i in range(nd):
            # torch's own rule: the extra rows output_padding adds must fall inside one stride step.
            _need(
                op[i] < max(s[i], d[i]),
                f"output_padding {list(op)} must be smaller than the stride {list(s)} or the dilation {list(d)}",
                field="output_padding",
                code="BAD_ATTR",
            )
        spatial = tuple(
            _conv_transpose_len(x.shape[2 + i], k[i], s[i], p[i], op[i], d[i])
            for i in range(nd)
        )
        return [TensorInfo((x.shape[0], cout) + spatial, x.dtype)]

    return rule


def _conv_transpose_params(attrs: Attrs, ins: Sequence[TensorInfo]) -> int:
    cin, cout, groups = ins[0].shape[1], int_attr(attrs, "out_channels"), int_attr(attrs, "groups")
    return cin * (cout // groups) * math.prod(ints_attr(attrs, "kernel_size")) + (cout if bool_attr(attrs, "bias") else 0)


def _conv_transpose_flops(attrs: Attrs, ins: Sequence[TensorInfo], outs: Sequence[TensorInfo]) -> int:
    # Every input value is scattered through a (cout / groups) x kernel block.
    cout, groups = int_attr(attrs, "out_channels"), int_attr(attrs, "groups")
    return 2 * ins[0].numel * (cout // groups) * math.prod(ints_attr(attrs, "kernel_size"))


_CONV_TRANSPOSE_GEOMETRY = ("kernel_size", "stride", "padding", "output_padding", "dilation")


def _build_conv_transpose(nd: int) -> Build:
    def build(attrs: Attrs, ins: Sequence[TensorInfo]) -> nn.Module:
        from torch import nn

        cin, cout = ins[0].shape[1], int_attr(attrs, "out_channels")
        groups, bias = int_attr(attrs, "groups"), bool_attr(attrs, "bias")
        if nd == 1:
            k1, s1, p1, op1, d1 = (single_attr(attrs, key) for key in _CONV_TRANSPOSE_GEOMETRY)
            return nn.ConvTranspose1d(cin, cout, kernel_size=k1, stride=s1, padding=p1, output_padding=op1,
                                      groups=groups, bias=bias, dilation=d1)
        k2, s2, p2, op2, d2 = (pair_attr(attrs, key) for key in _CONV_TRANSPOSE_GEOMETRY)
        return nn.ConvTranspose2d(cin, cout, kernel_size=k2, stride=s2, padding=p2, output_padding=op2,
                                  groups=groups, bias=bias, dilation=d2)

    return build


def _conv_transpose_attrs(nd: int) -> dict[str, AttrSpec]:
    return {
        **_conv_attrs(nd),
        "output_padding": _pair((0,) * nd, lo=0, n=nd, hi=63),
    }


# Upsampling: `scale_factor` or `size` (exactly one), one value for every spatial dimension or
# one per dimension; normalised to one value when all are equal, so both spellings digest alike.
UPSAMPLE_MODES = ("nearest", "bilinear")
# The element of a per-dimension list: sizes are ints, scale factors floats.
N = TypeVar("N", int, float)


def _one_if_equal(values: tuple[N, ...] | None) -> tuple[N, ...] | None:
    if values is not None and len(set(values)) == 1:
        return values[:1]
    return values


def _upsample_normalize(attrs: dict[str, AttrValue]) -> dict[str, AttrValue]:
    attrs["scale_factor"] = _one_if_equal(optional_floats_attr(attrs, "scale_factor"))
    attrs["size"] = _one_if_equal(optional_ints_attr(attrs, "size"))
    return attrs


def _per_dim(values: tuple[N, ...], n: int, key: str) -> tuple[N, ...]:
    _need(
        len(values) in (1, n),
        f"{key} has {len(values)} values for {n} spatial dimension(s); give one value or {n}",
        field=key,
        code="BAD_ATTR",
    )
    return tuple(values) * n if len(values) == 1 else tuple(values)


def _upsample_size(attrs: Attrs, x: TensorInfo) -> tuple[int, ...]:
    n = len(x.shape) - 2
    size = optional_ints_attr(attrs, "size")
    if size is not None:
        return _per_dim(size, n, "size")
    scales = _per_dim(floats_attr(attrs, "scale_factor"), n, "scale_factor")
    # torch's rule (F.interpolate without recompute_scale_factor): floor(size * scale).
    out = tuple(math.floor(float(x.shape[2 + i]) * scales[i]) for i in range(n))
    _need(
        min(out) >= 1,
        f"scale_factor {list(scales)} shrinks the spatial size {list(x.shape[2:])} to {list(out)}; "
        "use a larger scale_factor",
        field="scale_factor",
        code="BAD_ATTR",
    )
    return out


def _upsample(attrs: Attrs, ins: Sequence[TensorInfo], ctx: RuleContext) -> list[TensorInfo]:
    x = ins[0]
    _float(x)
    mode = str_attr(attrs, "mode")
    _need(attrs["scale_factor"] is not None or attrs["size"] is not None,
          "upsample needs scale_factor or size", field="scale_factor", code="BAD_ATTR")
    _need(attrs["scale_factor"] is None or attrs["size"] is None,
          "give scale_factor or size, not both (torch refuses both)", field="size", code="BAD_ATTR")
    if mode == "bilinear":
        _rank(x, 4, 4, "bilinear upsampling needs [batch, channels, height, width]")
    else:
        _rank(x, 3, 4, "nearest upsampling needs [batch, channels, length] or [batch, channels, height, width]")
        _need(
            not bool_attr(attrs, "align_corners"),
            "align_corners applies to bilinear upsampling only; drop it or use mode=bilinear",
            field="align_corners",
            code="BAD_ATTR",
        )
    return [TensorInfo(x.shape[:2] + _upsample_size(attrs, x), x.dtype)]


def _upsample_flops(attrs: Attrs, ins: Sequence[TensorInfo], outs: Sequence[TensorInfo]) -> int:
    # Nearest copies one value per output; bilinear blends four.
    return outs[0].numel * (8 if str_attr(attrs, "mode") == "bilinear" else 1)


def _build_upsample(attrs: Attrs, ins: Sequence[TensorInfo]) -> nn.Module:
    from torch import nn

    n = len(ins[0].shape) - 2
    mode = str_attr(attrs, "mode")
    size = optional_ints_attr(attrs, "size")
    scale_factor = optional_floats_attr(attrs, "scale_factor")
    return nn.Upsample(
        # Expanded per dimension: torch wants one value or exactly one per spatial dimension.
        size=None if size is None else _per_dim(size, n, "size"),
        scale_factor=None if scale_factor is None else _per_dim(scale_factor, n, "scale_factor"),
        mode=mode,
        align_corners=bool_attr(attrs, "align_corners") if mode == "bilinear" else None,
    )


def _pool_normalize(attrs: dict[str, AttrValue]) -> dict[str, AttrValue]:
    if attrs.get("stride") is None:
        attrs["stride"] = attrs["kernel_size"]
    return attrs


def _pool(attrs: Attrs, ins: Sequence[TensorInfo], ctx: RuleContext) -> list[TensorInfo]:
    x = ins[0]
    _float(x)
    _rank(x, 4, 4, "2-d pooling needs [batch, channels, height, width]")
    k, s, p = ints_attr(attrs, "kernel_size"), ints_attr(attrs, "stride"), ints_attr(attrs, "padding")
    for i in range(2):
        _need(
            2 * p[i] <= k[i],
            f"padding {p[i]} is more than half the kernel size {k[i]}",
            field="padding",
            code="BAD_ATTR",
        )
    hw = tuple(_conv_len(x.shape[2 + i], k[i], s[i], p[i], 1, "kernel_size") for i in range(2))
    return [TensorInfo(x.shape[:2] + hw, x.dtype)]


def _pool_flops(attrs: Attrs, ins: Sequence[TensorInfo], outs: Sequence[TensorInfo]) -> int:
    return outs[0].numel * math.prod(ints_attr(attrs, "kernel_size"))


def _build_pool(kind: str) -> Build:
    def build(attrs: Attrs, ins: Sequence[TensorInfo]) -> nn.Module:
        from torch import nn

        cls = nn.MaxPool2d if kind == "max" else nn.AvgPool2d
        return cls(pair_attr(attrs, "kernel_size"), pair_attr(attrs, "stride"), pair_attr(attrs, "padding"))

    return build


def _adaptive(attrs: Attrs, ins: Sequence[TensorInfo], ctx: RuleContext) -> list[TensorInfo]:
    x = ins[0]
    _float(x)
    _rank(x, 4, 4, "adaptive 2-d pooling needs [batch, channels, height, width]")
    out = ints_attr(attrs, "output_size")
    for i in range(2):
        _need(out[i] <= x.shape[2 + i], f"output_size {list(out)} is larger than the input {list(x.shape[2:])}", field="output_size", code="BAD_ATTR")
    return [TensorInfo(x.shape[:2] + out, x.dtype)]


def _build_adaptive(kind: str) -> Build:
    def build(attrs: Attrs, ins: Sequence[TensorInfo]) -> nn.Module:
        from torch import nn

        cls = nn.AdaptiveMaxPool2d if kind == "max" else nn.AdaptiveAvgPool2d
        return cls(ints_attr(attrs, "output_size"))

    return build


# ---------------------------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------------------------


def _batch_norm(attrs: Attrs, ins: Sequence[TensorInfo], ctx: RuleContext) -> list[TensorInfo]:
    x = ins[0]
    _float(x)
    _rank(x, 2, 4, "batch_norm needs [batch, channels], [batch, channels, length] or [batch, channels, h, w]")
    _consistent(attrs, "num_features", x.shape[1])
    _need(
        x.numel // x.shape[1] > 1,
        f"batch_norm on {list(x.shape)} sees one value per channel, which training cannot normalise; "
        "raise the smallest batch above 1 or use layer_norm",
        field="inputs[0]",
    )
    return [x]


def _build_batch_norm(attrs: Attrs, ins: Sequence[TensorInfo]) -> nn.Module:
    from torch import nn

    cls = nn.BatchNorm2d if len(ins[0].shape) == 4 else nn.BatchNorm1d
    return cls(ins[0].shape[1], eps=float_attr(attrs, "eps"), momentum=float_attr(attrs, "momentum"))


def _layer_norm(attrs: Attrs, ins: Sequence[TensorInfo], ctx: RuleContext) -> list[TensorInfo]:
    x = ins[0]
    _float(x)
    k = int_attr(attrs, "normalized_dims")
    _need(k <= len(x.shape), f"normalized_dims={k} but the input has rank {len(x.shape)}", field="normalized_dims", code="BAD_ATTR")
    _consistent(attrs, "normalized_shape", x.shape[-k:])
    return [x]


def _layer_norm_normalize(attrs: dict[str, AttrValue]) -> dict[str, AttrValue]:
    # torch's spelling: `normalized_shape` fixes how many trailing dims are normalised.
    shape = optional_ints_attr(attrs, "normalized_shape")
    if shape is not None:
        attrs["normalized_dims"] = len(shape)
    return attrs


def _layer_norm_params(attrs: Attrs, ins: Sequence[TensorInfo]) -> int:
    n = math.prod(ins[0].shape[-int_attr(attrs, "normalized_dims") :])
    if not bool_attr(attrs, "elementwise_affine"):
        return 0
    return n * (2 if bool_attr(attrs, "bias") else 1)


def _build_layer_norm(attrs: Attrs, ins: Sequence[TensorInfo]) -> nn.Module:
    from torch import nn

    k = int_attr(attrs, "normalized_dims")
    return nn.LayerNorm(
        list(ins[0].shape[-k:]),
        eps=float_attr(attrs, "eps"),
        elementwise_affine=bool_attr(attrs, "elementwise_affine"),
        bias=bool_attr(attrs, "bias"),
    )


def _group_norm(attrs: Attrs, ins: Sequence[TensorInfo], ctx: RuleContext) -> list[TensorInfo]:
    x = ins[0]
    _float(x)
    _rank(x, 2, 8, "group_norm needs [batch, channels, ...]")
    g = int_attr(attrs, "num_groups")
    _consistent(attrs, "num_channels", x.shape[1])
    _need(x.shape[1] % g == 0, f"{x.shape[1]} channels are not divisible by num_groups={g}", field="num_groups", code="BAD_ATTR")
    # torch refuses to train group norm when each normalised group holds a single value.
    _need(
        x.numel // g > 1,
        f"group_norm on {list(x.shape)} with {g} groups normalises single values; use fewer groups or larger inputs",
        field="inputs[0]",
    )
    return [x]


def _build_group_norm(attrs: Attrs, ins: Sequence[TensorInfo]) -> nn.Module:
    from torch import nn

    return nn.GroupNorm(int_attr(attrs, "num_groups"), ins[0].shape[1], eps=float_attr(attrs, "eps"), affine=bool_attr(attrs, "affine"))


def _rms_norm(attrs: Attrs, ins: Sequence[TensorInfo], ctx: RuleContext) -> list[TensorInfo]:
    _float(ins[0])
    _consistent(attrs, "normalized_shape", ins[0].shape[-1:])
    return [ins[0]]


def _build_rms_norm(attrs: Attrs, ins: Sequence[TensorInfo]) -> nn.Module:
    from torch import nn

    return nn.RMSNorm(ins[0].shape[-1], eps=float_attr(attrs, "eps"), elementwise_affine=bool_attr(attrs, "elementwise_affine"))


# ---------------------------------------------------------------------------------------------
# Shape manipulation
# ---------------------------------------------------------------------------------------------


def _reshape(attrs: Attrs, ins: Sequence[TensorInfo], ctx: RuleContext) -> list[TensorInfo]:
    x = ins[0]
    spec = ints_attr(attrs, "shape")
    _need(spec.count(-1) <= 1, f"shape {list(spec)} has more than one -1", field="shape", code="BAD_ATTR")
    out: list[int] = []
    for i, s in enumerate(spec):
        if s == 0:
            _need(i < len(x.shape), f"shape[{i}]=0 copies input dimension {i}, which does not exist", field="shape", code="BAD_ATTR")
            out.append(x.shape[i])
        else:
            out.append(s)
    known = math.prod(s for s in out if s != -1)
    if -1 in out:
        _need(
            known > 0 and x.numel % known == 0,
            f"cannot reshape {list(x.shape)} ({x.numel} elements) to {list(spec)}",
            field="shape",
        )
        out[out.index(-1)] = x.numel // known
    _need(
        math.prod(out) == x.numel,
        f"cannot reshape {list(x.shape)} ({x.numel} elements) to {out} ({math.prod(out)} elements); "
        "use 0 to copy an input dimension (such as the batch) and -1 for one inferred dimension",
        field="shape",
    )
    return [TensorInfo(tuple(out), x.dtype)]


def _flatten(attrs: Attrs, ins: Sequence[TensorInfo], ctx: RuleContext) -> list[TensorInfo]:
    x = ins[0]
    r = len(x.shape)
    a = _dim(int_attr(attrs, "start_dim"), r, "start_dim")
    b = _dim(int_attr(attrs, "end_dim"), r, "end_dim")
    _need(a <= b, f"start_dim {a} comes after end_dim {b}", field="start_dim", code="BAD_ATTR")
    return [TensorInfo(x.shape[:a] + (math.prod(x.shape[a : b + 1]),) + x.shape[b + 1 :], x.dtype)]


def _permute(attrs: Attrs, ins: Sequence[TensorInfo], ctx: RuleContext) -> list[TensorInfo]:
    x = ins[0]
    dims = ints_attr(attrs, "dims")
    _need(
        sorted(dims) == list(range(len(x.shape))),
        f"dims {list(dims)} is not a permutation of 0..{len(x.shape) - 1}",
        field="dims",
        code="BAD_ATTR",
    )
    return [TensorInfo(tuple(x.shape[d] for d in dims), x.dtype)]


def _transpose(attrs: Attrs, ins: Sequence[TensorInfo], ctx: RuleContext) -> list[TensorInfo]:
    x = ins[0]
    r = len(x.shape)
    a = _dim(int_attr(attrs, "dim0"), r, "dim0")
    b = _dim(int_attr(attrs, "dim1"), r, "dim1")
    shape = list(x.shape)
    shape[a], shape[b] = shape[b], shape[a]
    return [TensorInfo(tuple(shape), x.dtype)]


def _concat(attrs: Attrs, ins: Sequence[TensorInfo], ctx: RuleContext) -> list[TensorInfo]:
    _same_dtype(ins)
    r = len(ins[0].shape)
    d = _dim(int_attr(attrs, "dim"), r, "dim")
    for i, info in enumerate(ins[1:], start=1):
        _need(
            len(info.shape) == r and all(info.shape[j] == ins[0].shape[j] for j in range(r) if j != d),
            f"input {i} has shape {list(info.shape)}, input 0 has {list(ins[0].shape)}: "
            f"they may differ only in dimension {d}",
            field=f"inputs[{i}]",
        )
    shape = list(ins[0].shape)
    shape[d] = sum(info.shape[d] for info in ins)
    return [TensorInfo(tuple(shape), ins[0].dtype)]


def _split(attrs: Attrs, ins: Sequence[TensorInfo], ctx: RuleContext) -> list[TensorInfo]:
    x = ins[0]
    d = _dim(int_attr(attrs, "dim"), len(x.shape), "dim")
    sizes = ints_attr(attrs, "sizes")
    _need(
        sum(sizes) == x.shape[d],
        f"sizes {list(sizes)} add up to {sum(sizes)}, but dimension {d} of {list(x.shape)} is {x.shape[d]}",
        field="sizes",
    )
    outs = []
    for s in sizes:
        shape = list(x.shape)
        shape[d] = s
        outs.append(TensorInfo(tuple(shape), x.dtype))
    return outs


def _reduce(attrs: Attrs, ins: Sequence[TensorInfo], ctx: RuleContext) -> list[TensorInfo]:
    x = ins[0]
    _float(x)
    given = ints_attr(attrs, "dims")
    dims = sorted({_dim(d, len(x.shape), "dims") for d in given})
    _need(len(dims) == len(given), f"dims {list(given)} names a dimension twice", field="dims", code="BAD_ATTR")
    if bool_attr(attrs, "keepdim"):
        shape = tuple(1 if i in dims else s for i, s in enumerate(x.shape))
    else:
        shape = tuple(s for i, s in enumerate(x.shape) if i not in dims)
    return [TensorInfo(shape, x.dtype)]


def _reduce_flops(attrs: Attrs, ins: Sequence[TensorInfo], outs: Sequence[TensorInfo]) -> int:
    return ins[0].numel


# ---------------------------------------------------------------------------------------------
# Embeddings
# ---------------------------------------------------------------------------------------------


def _index_input(x: TensorInfo) -> None:
    _need(
        x.dtype in INDEX_DTYPES,
        f"input 0 has dtype {pb.DType.Name(x.dtype)}; embeddings take DTYPE_INT64 or DTYPE_INT32 indices",
        field="inputs[0]",
        code="BAD_DTYPE",
    )


def _embedding(attrs: Attrs, ins: Sequence[TensorInfo], ctx: RuleContext) -> list[TensorInfo]:
    _index_input(ins[0])
    return [TensorInfo(ins[0].shape + (int_attr(attrs, "embedding_dim"),), ctx.compute_dtype)]


def _embedding_bag(attrs: Attrs, ins: Sequence[TensorInfo], ctx: RuleContext) -> list[TensorInfo]:
    x = ins[0]
    _index_input(x)
    _rank(x, 2, 2, "embedding_bag takes [batch, bag_size] indices")
    return [TensorInfo((x.shape[0], int_attr(attrs, "embedding_dim")), ctx.compute_dtype)]


def _embedding_params(attrs: Attrs, ins: Sequence[TensorInfo]) -> int:
    return int_attr(attrs, "num_embeddings") * int_attr(attrs, "embedding_dim")


def _build_embedding(attrs: Attrs, ins: Sequence[TensorInfo]) -> nn.Module:
    from torch import nn

    return nn.Embedding(int_attr(attrs, "num_embeddings"), int_attr(attrs, "embedding_dim"))


def _build_embedding_bag(attrs: Attrs, ins: Sequence[TensorInfo]) -> nn.Module:
    from torch import nn

    return nn.EmbeddingBag(int_attr(attrs, "num_embeddings"), int_attr(attrs, "embedding_dim"), mode=str_attr(attrs, "mode"))


# ---------------------------------------------------------------------------------------------
# Attention and mixture of experts
# ---------------------------------------------------------------------------------------------


def _sdpa(attrs: Attrs, ins: Sequence[TensorInfo], ctx: RuleContext) -> list[TensorInfo]:
    q, k, v = ins
    for i, info in enumerate(ins):
        _float(info, i)
        _rank(info, 2, 8, "attention needs [..., sequence, features]", i)
    _same_dtype(ins)
    _need(q.shape[:-2] == k.shape[:-2] == v.shape[:-2], f"leading dims of q {list(q.shape)}, k {list(k.shape)}, v {list(v.shape)} differ", field="inputs[1]")
    _need(q.shape[-1] == k.shape[-1], f"q has {q.shape[-1]} features, k has {k.shape[-1]}", field="inputs[1]")
    _need(k.shape[-2] == v.shape[-2], f"k has sequence {k.shape[-2]}, v has {v.shape[-2]}", field="inputs[2]")
    return [TensorInfo(q.shape[:-1] + (v.shape[-1],), q.dtype)]


def _sdpa_flops(attrs: Attrs, ins: Sequence[TensorInfo], outs: Sequence[TensorInfo]) -> int:
    q, k, v = ins
    return 2 * q.numel * k.shape[-2] + 2 * outs[0].numel * k.shape[-2]


def _mha_inputs(ins: Sequence[TensorInfo]) -> tuple[TensorInfo, TensorInfo, TensorInfo]:
    q = ins[0]
    k = ins[1] if len(ins) > 1 else q
    v = ins[2] if len(ins) > 2 else k
    return q, k, v


def _mha(attrs: Attrs, ins: Sequence[TensorInfo], ctx: RuleContext) -> list[TensorInfo]:
    for i, info in enumerate(ins):
        _float(info, i)
        _rank(info, 3, 3, "multi_head_attention takes [batch, sequence, features]", i)
    _same_dtype(ins)
    q, k, v = _mha_inputs(ins)
    e, h = q.shape[-1], int_attr(attrs, "num_heads")
    _consistent(attrs, "embed_dim", e)
    _need(e % h == 0, f"{e} features are not divisible by num_heads={h}", field="num_heads", code="BAD_ATTR")
    _need(k.shape[0] == q.shape[0] and v.shape[0] == q.shape[0], "query, key and value batch sizes differ", field="inputs[1]")
    _need(k.shape[1] == v.shape[1], f"key sequence {k.shape[1]} and value sequence {v.shape[1]} differ", field="inputs[2]")
    return [q]


def _mha_params(attrs: Attrs, ins: Sequence[TensorInfo]) -> int:
    q, k, v = _mha_inputs(ins)
    e = q.shape[-1]
    b = e if bool_attr(attrs, "bias") else 0
    return (e * e + b) * 2 + (k.shape[-1] * e + b) + (v.shape[-1] * e + b)


def _mha_flops(attrs: Attrs, ins: Sequence[TensorInfo], outs: Sequence[TensorInfo]) -> int:
    q, k, v = _mha_inputs(ins)
    e = q.shape[-1]
    proj = 2 * (q.numel * e * 2 + k.numel * e + v.numel * e)
    return proj + 4 * q.numel * k.shape[1]


def _moe(attrs: Attrs, ins: Sequence[TensorInfo], ctx: RuleContext) -> list[TensorInfo]:
    x = ins[0]
    _float(x)
    _rank(x, 2, 8, "moe takes [..., features]")
    k, n = int_attr(attrs, "top_k"), int_attr(attrs, "num_experts")
    _need(k <= n, f"top_k={k} is more than num_experts={n}", field="top_k", code="BAD_ATTR")
    return [x]


def _moe_params(attrs: Attrs, ins: Sequence[TensorInfo]) -> int:
    d = ins[0].shape[-1]
    n, h = int_attr(attrs, "num_experts"), int_attr(attrs, "hidden_dim")
    return d * n + n + n * (d * h + h + h * d + d)


def _moe_flops(attrs: Attrs, ins: Sequence[TensorInfo], outs: Sequence[TensorInfo]) -> int:
    d = ins[0].shape[-1]
    tokens = ins[0].numel // d
    n, h = int_attr(attrs, "num_experts"), int_attr(attrs, "hidden_dim")
    # Experts run densely (every token through every expert) so the graph has no data-dependent shapes.
    return 2 * tokens * d * n + 4 * tokens * n * d * h + 2 * tokens * n * d


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------


def _simple(name: str, doc: str, build: Build, attrs: Mapping[str, AttrSpec] | None = None, infer: Infer = _unary_float, flops: Flops = _elementwise) -> OpSpec:
    return OpSpec(name, doc, attrs or {}, 1, 1, infer, build, flops=flops)


def _layer(cls_name: str, **fixed: object) -> Build:
    def build(attrs: Attrs, ins: Sequence[TensorInfo]) -> nn.Module:
        cls = getattr(_layers(), cls_name)
        kwargs: dict[str, object] = {k: (tuple(v) if isinstance(v, tuple) else v) for k, v in attrs.items()}
        kwargs.update(fixed)
        return cls(**kwargs)

    return build


def _torch(cls_name: str, **kwargs: object) -> Build:
    def build(attrs: Attrs, ins: Sequence[TensorInfo]) -> nn.Module:
        from torch import nn

        return getattr(nn, cls_name)(**kwargs)

    return build


def _registry() -> dict[str, OpSpec]:
    ops = [
        _simple("identity", "returns its input", _torch("Identity"), infer=_unary_any, flops=lambda a, i, o: 0),
        _simple("relu", "max(x, 0)", _torch("ReLU")),
        _simple("gelu", "Gaussian error linear unit", lambda a, i: _torch("GELU", approximate=str_attr(a, "approximate"))(a, i),
                {"approximate": AttrSpec("str", default="none", choices=("none", "tanh"))}),
        _simple("silu", "x * sigmoid(x)", _torch("SiLU")),
        _simple("tanh", "hyperbolic tangent", _torch("Tanh")),
        _simple("sigmoid", "logistic function", _torch("Sigmoid")),
        _simple("softmax", "softmax along `dim`", lambda a, i: _torch("Softmax", dim=int_attr(a, "dim"))(a, i),
                {"dim": AttrSpec("int", default=-1, lo=-8, hi=7)}, infer=_softmax),
        _simple("dropout", "dropout with probability p (training only)", lambda a, i: _torch("Dropout", p=float_attr(a, "p"))(a, i),
                {"p": AttrSpec("float", default=0.1, lo=0.0, hi=1.0, hi_open=True)}),
        _simple("scale", "x * value", _layer("Scale"), {"value": AttrSpec("float", lo=-1e6, hi=1e6)}),
        OpSpec("add", "a + b with broadcasting", {}, 2, 2, _binary, _layer("Add")),
        OpSpec("sub", "a - b with broadcasting", {}, 2, 2, _binary, _layer("Sub")),
        OpSpec("mul", "a * b with broadcasting", {}, 2, 2, _binary, _layer("Mul")),
        OpSpec("matmul", "batched matrix product", {}, 2, 2, _matmul, _layer("MatMul"), flops=_matmul_flops),
        OpSpec("linear", "x @ W.T + b over the last dimension", {"out_features": _I("output features"), "bias": BOOL_T, "in_features": _restates("input features")},
               1, 1, _linear, _build_linear, params=_linear_params, flops=_linear_flops),
        OpSpec("conv1d", "1-d convolution over [batch, channels, length]", _conv_attrs(1), 1, 1, _conv(1), _build_conv(1),
               params=_conv_params, flops=_conv_flops),
        OpSpec("conv2d", "2-d convolution over [batch, channels, h, w] (groups = channels: depthwise)", _conv_attrs(2),
               1, 1, _conv(2), _build_conv(2), params=_conv_params, flops=_conv_flops),
        OpSpec("conv_transpose1d", "1-d transposed convolution over [batch, channels, length] (decoders)",
               _conv_transpose_attrs(1), 1, 1, _conv_transpose(1), _build_conv_transpose(1),
               params=_conv_transpose_params, flops=_conv_transpose_flops),
        OpSpec("conv_transpose2d", "2-d transposed convolution over [batch, channels, h, w] (decoders, U-Nets)",
               _conv_transpose_attrs(2), 1, 1, _conv_transpose(2), _build_conv_transpose(2),
               params=_conv_transpose_params, flops=_conv_transpose_flops),
        OpSpec("upsample", "resize the spatial dims by scale_factor or to size (nearest: rank 3 or 4; bilinear: rank 4)",
               {"mode": AttrSpec("str", default="nearest", choices=UPSAMPLE_MODES),
                "scale_factor": AttrSpec("floats", default=None, lo=0.0, hi=64.0, lo_open=True, max_len=2,
                                         doc="output = floor(input * scale_factor) per spatial dim"),
                "size": AttrSpec("ints", default=None, lo=1, hi=1 << 16, max_len=2, doc="output spatial size"),
                "align_corners": AttrSpec("bool", default=False, doc="bilinear only")},
               1, 1, _upsample, _build_upsample, flops=_upsample_flops, normalize=_upsample_normalize),
        OpSpec("batch_norm", "batch normalisation over dimension 1",
               {"eps": EPS, "momentum": AttrSpec("float", default=0.1, lo=0.0, hi=1.0), "num_features": _restates("channels")}, 1, 1, _batch_norm, _build_batch_norm,
               params=lambda a, i: 2 * i[0].shape[1], flops=lambda a, i, o: 4 * o[0].numel),
        OpSpec("layer_norm", "layer normalisation over the last `normalized_dims` dimensions",
               {"normalized_dims": AttrSpec("int", default=1, lo=1, hi=8), "eps": EPS, "elementwise_affine": BOOL_T, "bias": BOOL_T,
                "normalized_shape": _restates("trailing dims (sets normalized_dims)", "ints")},
               1, 1, _layer_norm, _build_layer_norm, params=_layer_norm_params, flops=lambda a, i, o: 5 * o[0].numel,
               normalize=_layer_norm_normalize),
        OpSpec("group_norm", "group normalisation over channel groups",
               {"num_groups": _I("number of channel groups"), "eps": EPS, "affine": BOOL_T, "num_channels": _restates("channels")}, 1, 1, _group_norm, _build_group_norm,
               params=lambda a, i: 2 * i[0].shape[1] if bool_attr(a, "affine") else 0, flops=lambda a, i, o: 5 * o[0].numel),
        OpSpec("rms_norm", "root-mean-square normalisation over the last dimension",
               {"eps": AttrSpec("float", default=1e-6, lo=0.0, hi=1.0, lo_open=True), "elementwise_affine": BOOL_T,
                "normalized_shape": AttrSpec("ints", default=None, lo=1, hi=INT_LIMIT, max_len=1, redundant=True)},
               1, 1, _rms_norm, _build_rms_norm, params=lambda a, i: i[0].shape[-1] if bool_attr(a, "elementwise_affine") else 0,
               flops=lambda a, i, o: 4 * o[0].numel),
        OpSpec("reshape", "reshape; 0 copies an input dimension, one -1 is inferred",
               {"shape": AttrSpec("ints", lo=-1, hi=INT_LIMIT)}, 1, 1, _reshape, _layer("Reshape"), flops=lambda a, i, o: 0),
        OpSpec("flatten", "flatten dimensions start_dim..end_dim",
               {"start_dim": AttrSpec("int", default=1, lo=-8, hi=7), "end_dim": AttrSpec("int", default=-1, lo=-8, hi=7)},
               1, 1, _flatten, lambda a, i: _torch("Flatten", start_dim=int_attr(a, "start_dim"), end_dim=int_attr(a, "end_dim"))(a, i),
               flops=lambda a, i, o: 0),
        OpSpec("permute", "reorder dimensions", {"dims": AttrSpec("ints", lo=0, hi=7)}, 1, 1, _permute, _layer("Permute"),
               flops=lambda a, i, o: 0),
        OpSpec("transpose", "swap two dimensions",
               {"dim0": AttrSpec("int", lo=-8, hi=7), "dim1": AttrSpec("int", lo=-8, hi=7)}, 1, 1, _transpose, _layer("Transpose"),
               flops=lambda a, i, o: 0),
        OpSpec("concat", "concatenate along `dim`", {"dim": AttrSpec("int", default=-1, lo=-8, hi=7)}, 1, 64, _concat,
               _layer("Concat"), flops=lambda a, i, o: 0),
        OpSpec("split", "split along `dim` into pieces of `sizes`; refer to piece i as `name:i`",
               {"sizes": AttrSpec("ints", lo=1, hi=INT_LIMIT, max_len=64), "dim": AttrSpec("int", default=-1, lo=-8, hi=7)},
               1, 1, _split, _layer("Split"), flops=lambda a, i, o: 0, multi_output=True),
        OpSpec("mean", "mean over `dims`", {"dims": AttrSpec("ints", lo=-8, hi=7), "keepdim": BOOL_F}, 1, 1, _reduce,
               _layer("Reduce", kind="mean"), flops=_reduce_flops,
               attr_aliases=REDUCE_ALIASES),
        OpSpec("sum", "sum over `dims`", {"dims": AttrSpec("ints", lo=-8, hi=7), "keepdim": BOOL_F}, 1, 1, _reduce,
               _layer("Reduce", kind="sum"), flops=_reduce_flops,
               attr_aliases=REDUCE_ALIASES),
        OpSpec("amax", "maximum over `dims`", {"dims": AttrSpec("ints", lo=-8, hi=7), "keepdim": BOOL_F}, 1, 1, _reduce,
               _layer("Reduce", kind="amax"), flops=_reduce_flops,
               attr_aliases=REDUCE_ALIASES),
        OpSpec("max_pool2d", "2-d max pooling (stride defaults to the kernel size)",
               {"kernel_size": _pair(required=True, hi=64), "stride": _pair(None, hi=64), "padding": _pair((0, 0), lo=0, hi=32)},
               1, 1, _pool, _build_pool("max"), flops=_pool_flops, normalize=_pool_normalize),
        OpSpec("avg_pool2d", "2-d average pooling (stride defaults to the kernel size)",
               {"kernel_size": _pair(required=True, hi=64), "stride": _pair(None, hi=64), "padding": _pair((0, 0), lo=0, hi=32)},
               1, 1, _pool, _build_pool("avg"), flops=_pool_flops, normalize=_pool_normalize),
        OpSpec("adaptive_avg_pool2d", "average-pool to a fixed output_size", {"output_size": _pair(required=True)}, 1, 1,
               _adaptive, _build_adaptive("avg"), flops=lambda a, i, o: i[0].numel),
        OpSpec("adaptive_max_pool2d", "max-pool to a fixed output_size", {"output_size": _pair(required=True)}, 1, 1,
               _adaptive, _build_adaptive("max"), flops=lambda a, i, o: i[0].numel),
        OpSpec("embedding", "look up rows of a [num_embeddings, embedding_dim] table",
               {"num_embeddings": _I("vocabulary size"), "embedding_dim": _I("row width")}, 1, 1, _embedding,
               _build_embedding, params=_embedding_params, flops=lambda a, i, o: 0,
               index_bound=lambda a: int_attr(a, "num_embeddings")),
        OpSpec("embedding_bag", "pool (mean, sum or max) the embeddings of each bag of [batch, bag] indices",
               {"num_embeddings": _I("vocabulary size"), "embedding_dim": _I("row width"),
                "mode": AttrSpec("str", default="mean", choices=("mean", "sum", "max"))}, 1, 1, _embedding_bag,
               _build_embedding_bag, params=_embedding_params, flops=lambda a, i, o: i[0].numel * o[0].shape[-1],
               index_bound=lambda a: int_attr(a, "num_embeddings")),
        OpSpec("scaled_dot_product_attention", "softmax(q k^T * scale) v over (q, k, v)",
               {"is_causal": BOOL_F, "scale": AttrSpec("float", default=None, lo=0.0, hi=1e3, lo_open=True)},
               3, 3, _sdpa, _layer("ScaledDotProductAttention"), flops=_sdpa_flops),
        OpSpec("multi_head_attention", "multi-head attention: (x) self, (q, kv) cross, or (q, k, v)",
               {"num_heads": _I("number of heads", hi=256), "bias": BOOL_T, "is_causal": BOOL_F, "embed_dim": _restates("query features")},
               1, 3, _mha, lambda a, i: _layers().MultiHeadAttention(
                   embed_dim=i[0].shape[-1], kdim=_mha_inputs(i)[1].shape[-1], vdim=_mha_inputs(i)[2].shape[-1],
                   num_heads=int_attr(a, "num_heads"), bias=bool_attr(a, "bias"), is_causal=bool_attr(a, "is_causal")),
               params=_mha_params, flops=_mha_flops),
        OpSpec("moe", "top-k gated mixture of MLP experts (dense dispatch, traceable)",
               {"num_experts": _I("number of experts", lo=2, hi=64), "top_k": _I("experts per token", hi=64),
                "hidden_dim": _I("expert hidden width"),
                "activation": AttrSpec("str", default="gelu", choices=("gelu", "relu", "silu"))},
               1, 1, _moe, lambda a, i: _layers().TopKMoE(
                   dim=i[0].shape[-1], num_experts=int_attr(a, "num_experts"), top_k=int_attr(a, "top_k"),
                   hidden_dim=int_attr(a, "hidden_dim"), activation=str_attr(a, "activation")),
               params=_moe_params, flops=_moe_flops),
    ]
    return {op.name: op for op in ops}


# Other spellings of the same ops (torch's and common shorthands); resolved before anything else,
# so an alias never changes a digest.
ALIASES: Mapping[str, str] = MappingProxyType({
    "cat": "concat",
    "sdpa": "scaled_dot_product_attention",
    "mha": "multi_head_attention",
    "multihead_attention": "multi_head_attention",
    "topk_moe": "moe",
    "top_k_moe": "moe",
    "mixture_of_experts": "moe",
    "batchnorm": "batch_norm",
    "layernorm": "layer_norm",
    "groupnorm": "group_norm",
    "rmsnorm": "rms_norm",
    "swish": "silu",
    "convtranspose1d": "conv_transpose1d",
    "convtranspose2d": "conv_transpose2d",
    "interpolate": "upsample",
})

# Read-only: the allowlist is fixed at import, never extended at run time.
OPS: Mapping[str, OpSpec] = MappingProxyType(_registry())
