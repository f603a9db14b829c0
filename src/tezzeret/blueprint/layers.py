"""The torch layers behind ops that `torch.nn` has no ready module for.

Owns one small, importable `nn.Module` class per such op (elementwise arithmetic, reshapes,
reductions, attention, top-k mixture of experts). Every forward here must trace with
`torch.compile(fullgraph=True)`: no data-dependent Python control flow, no `.item()`, no boolean
indexing, no shapes that depend on tensor values. Attributes are plain ints, floats, strings and
tuples so Dynamo treats them as constants. This module must never validate anything: builders
only receive attributes the validator has already checked.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import nn


class Add(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


class Sub(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a - b


class Mul(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a * b


class MatMul(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, b)


class Scale(nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = float(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.value

    def extra_repr(self) -> str:
        return f"value={self.value}"


class Reshape(nn.Module):
    """Reshape where 0 copies the input's dimension, so a dynamic batch passes through."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = tuple(int(s) for s in shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        target = [x.shape[i] if s == 0 else s for i, s in enumerate(self.shape)]
        return x.reshape(target)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


class Permute(nn.Module):
    def __init__(self, dims: tuple[int, ...]) -> None:
        super().__init__()
        self.dims = tuple(int(d) for d in dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(self.dims)


class Transpose(nn.Module):
    def __init__(self, dim0: int, dim1: int) -> None:
        super().__init__()
        self.dim0, self.dim1 = int(dim0), int(dim1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(self.dim0, self.dim1)


class Concat(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = int(dim)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=self.dim)


class Split(nn.Module):
    def __init__(self, sizes: tuple[int, ...], dim: int) -> None:
        super().__init__()
        self.sizes = tuple(int(s) for s in sizes)
        self.dim = int(dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(torch.split(x, list(self.sizes), dim=self.dim))


class Reduce(nn.Module):
    def __init__(self, kind: str, dims: tuple[int, ...], keepdim: bool) -> None:
        super().__init__()
        if kind not in ("mean", "sum", "amax"):
            raise ValueError(f"unknown reduction {kind!r}")
        self.kind = kind
        self.dims = tuple(int(d) for d in dims)
        self.keepdim = bool(keepdim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "mean":
            return x.mean(dim=self.dims, keepdim=self.keepdim)
        if self.kind == "sum":
            return x.sum(dim=self.dims, keepdim=self.keepdim)
        return x.amax(dim=self.dims, keepdim=self.keepdim)

    def extra_repr(self) -> str:
        return f"{self.kind}, dims={self.dims}, keepdim={self.keepdim}"


class ScaledDotProductAttention(nn.Module):
    def __init__(self, is_causal: bool, scale: float | None) -> None:
        super().__init__()
        self.is_causal = bool(is_causal)
        self.scale = None if scale is None else float(scale)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, is_causal=self.is_causal, scale=self.scale)


class MultiHeadAttention(nn.Module):
    """Multi-head attention over [batch, seq, features] built on SDPA.

    Written here rather than using `nn.MultiheadAttention` because that module switches between a
    fused fast path and a slow path on runtime checks (training flag, grad mode, mask types), which
    makes compiled entries depend on conditions the IR does not state.
    """

    def __init__(self, embed_dim: int, kdim: int, vdim: int, num_heads: int, bias: bool, is_causal: bool) -> None:
        super().__init__()
        self.num_heads = int(num_heads)
        self.head_dim = embed_dim // num_heads
        self.is_causal = bool(is_causal)
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(kdim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(vdim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        return x.reshape(b, s, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, query: torch.Tensor, key: torch.Tensor | None = None, value: torch.Tensor | None = None) -> torch.Tensor:
        # None checks are on Python arguments fixed by the plan, not on tensor data.
        key = query if key is None else key
        value = key if value is None else value
        q = self._heads(self.q_proj(query))
        k = self._heads(self.k_proj(key))
        v = self._heads(self.v_proj(value))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=self.is_causal)
        b, _, s, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, s, self.num_heads * self.head_dim))


_ACTIVATIONS: Mapping[str, Callable[[torch.Tensor], torch.Tensor]] = MappingProxyType(
    {"gelu": F.gelu, "relu": F.relu, "silu": F.silu}
)


class TopKMoE(nn.Module):
    """Top-k gated mixture of MLP experts with dense dispatch.

    Every expert runs on every token and the outputs are combined with a weight mask that is zero
    outside each token's top-k experts (built with `scatter`). That costs FLOPs compared with
    sparse routing but keeps every shape static and the graph free of data-dependent indexing,
    which is what `fullgraph=True` compilation and per-shape AOT entries need.
    """

    def __init__(self, dim: int, num_experts: int, top_k: int, hidden_dim: int, activation: str) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}")
        self.top_k = int(top_k)
        self.activation = activation
        self.gate = nn.Linear(dim, num_experts)
        self.w1 = nn.Parameter(torch.empty(num_experts, dim, hidden_dim))
        self.b1 = nn.Parameter(torch.empty(num_experts, hidden_dim))
        self.w2 = nn.Parameter(torch.empty(num_experts, hidden_dim, dim))
        self.b2 = nn.Parameter(torch.empty(num_experts, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Same fan-in uniform bounds nn.Linear uses, per expert.
        d, h = self.w1.shape[1], self.w1.shape[2]
        for w, b, fan_in in ((self.w1, self.b1, d), (self.w2, self.b2, h)):
            bound = 1.0 / math.sqrt(fan_in)
            nn.init.uniform_(w, -bound, bound)
            nn.init.uniform_(b, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(self.gate(x), dim=-1)
        top_w, top_i = torch.topk(probs, self.top_k, dim=-1)
        top_w = top_w / top_w.sum(dim=-1, keepdim=True)
        weights = torch.zeros_like(probs).scatter(-1, top_i, top_w)
        act = _ACTIVATIONS[self.activation]
        hidden = act(torch.einsum("...d,edh->...eh", x, self.w1) + self.b1)
        experts = torch.einsum("...eh,ehd->...ed", hidden, self.w2) + self.b2
        return torch.einsum("...e,...ed->...d", weights, experts)
