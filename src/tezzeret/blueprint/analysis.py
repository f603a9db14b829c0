"""Static analysis of a BlueprintIR: the SecurityValidator's checks and the facts they establish.

Owns `analyze`, which checks one in-memory IR against `ValidationLimits` (schema version, round
trip, quarantine, sizes and string lengths, names, dtypes and dims, op allowlist and attributes,
the DAG, shapes and dtypes on every edge at the smallest, example and largest batch, parameter,
FLOP and activation budgets) and returns an `Analysis`: the nodes in canonical order with their
input/output slots, and the concrete shapes. Everything downstream (digest, module builder,
example inputs) works from an `Analysis`, never from the raw IR.

It must never let an exception other than `BlueprintRejected` escape, never recurse on user data
(graph walks are iterative), never do work that is not bounded by a limit checked before it, and
never import torch.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tezzeret.blueprint.attrs import AttrValue, ints_attr, parse_attrs
from tezzeret.blueprint.errors import BlueprintRejected
from tezzeret.blueprint.ops import ALIASES, FLOAT_DTYPES, INDEX_DTYPES, OPS, RuleContext, RuleError, TensorInfo
from tezzeret.blueprint.limits import ValidationLimits
from tezzeret.leyline import SCHEMA_VERSION, encode, pb


NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-/]*")
REF_RE = re.compile(r"([A-Za-z0-9_][A-Za-z0-9_.\-/]*)(?::([0-9]{1,4}))?")
# Karn's adversarial band starts above this risk (upstream §5: adversarial is 0.8-1.0).
ADVERSARIAL_RISK = 0.8
DEFAULT_EXAMPLE_BATCH = 8


@dataclass(frozen=True)
class SymbolRange:
    """The one symbolic dimension (the batch) and its inclusive range."""

    name: str
    min: int
    max: int
    example: int


@dataclass(frozen=True)
class InputDecl:
    name: str
    dtype: int
    # None marks the symbolic dimension.
    dims: tuple[int | None, ...]

    def shape(self, batch: int | None) -> tuple[int, ...]:
        """The concrete shape at `batch` (None only for inputs without the symbolic dimension)."""
        if batch is None:
            if None in self.dims:
                raise ValueError(f"input {self.name!r} has the symbolic dimension; a batch size is needed")
            return tuple(d for d in self.dims if d is not None)
        return tuple(batch if d is None else d for d in self.dims)


@dataclass(frozen=True)
class Step:
    """One node in canonical (topological, name-independent) order."""

    position: int
    name: str
    op: str
    attrs: Mapping[str, AttrValue]
    in_slots: tuple[int, ...]
    out_slots: tuple[int, ...]


@dataclass(frozen=True)
class Analysis:
    inputs: tuple[InputDecl, ...]
    symbol: SymbolRange | None
    compute_dtype: int
    steps: tuple[Step, ...]
    output_slots: tuple[int, ...]
    output_names: tuple[str, ...]
    # Shapes of every slot (inputs first, then node outputs in step order) per evaluated batch.
    slot_infos: Mapping[int, tuple[TensorInfo, ...]]
    # Per input: the number of valid indices (index inputs only), else None.
    index_bounds: tuple[int | None, ...]
    parameters: int
    flops: Mapping[int, int]
    activation_bytes: Mapping[int, int]
    metadata: pb.BlueprintMetadata

    @property
    def example_batch(self) -> int:
        return self.symbol.example if self.symbol else 0

    @property
    def max_batch(self) -> int:
        return self.symbol.max if self.symbol else 0

    @property
    def n_slots(self) -> int:
        return len(self.inputs) + sum(len(s.out_slots) for s in self.steps)


def _reject(code: str, message: str, node: str | None = None, field: str | None = None) -> BlueprintRejected:
    return BlueprintRejected(code, message, node=node, field=field)


def _short(text: str, n: int = 40) -> str:
    return repr(text if len(text) <= n else text[:n] + "…")


# ---------------------------------------------------------------------------------------------
# Envelope: version, round trip, policy, sizes, strings
# ---------------------------------------------------------------------------------------------


def _check_envelope(ir: pb.BlueprintIR) -> None:
    if not isinstance(ir, pb.BlueprintIR):
        raise _reject("MALFORMED", f"expected a leyline.BlueprintIR, got {type(ir).__name__}")
    if ir.schema_version != SCHEMA_VERSION:
        raise _reject(
            "BAD_SCHEMA_VERSION",
            f"schema_version is {ir.schema_version}; this Tezzeret reads version {SCHEMA_VERSION}: "
            "set schema_version to 1 or upgrade Tezzeret",
            field="schema_version",
        )
    data = encode(ir)
    clean = pb.BlueprintIR()
    clean.CopyFrom(ir)
    clean.DiscardUnknownFields()
    again = pb.BlueprintIR()
    again.ParseFromString(data)
    if encode(clean) != data or encode(again) != data:
        raise _reject(
            "NOT_CANONICAL",
            "the IR carries unknown fields or does not survive decode -> re-encode; "
            "regenerate it with this schema's leyline.proto",
        )


def _check_policy(meta: pb.BlueprintMetadata) -> None:
    if meta.quarantine_only:
        raise _reject(
            "QUARANTINED",
            "metadata.quarantine_only is set: this blueprint may only run in Karn's quarantine and "
            "is never compiled into Urza",
            field="metadata.quarantine_only",
        )
    if meta.tier == pb.TIER_ADVERSARIAL:
        raise _reject(
            "QUARANTINED",
            "metadata.tier is TIER_ADVERSARIAL: adversarial blueprints are quarantine-only and never compiled",
            field="metadata.tier",
        )
    for key, lo, hi in (("risk", 0.0, 1.0), ("tamiyo_interest", 0.0, 1.0), ("value", 0.0, 1e9)):
        if not meta.HasField(key):
            continue
        value = getattr(meta, key)
        if not math.isfinite(value) or not lo <= value <= hi:
            raise _reject(
                "BAD_METADATA",
                f"metadata.{key} is {value}; it must be a finite number in [{lo:g}, {hi:g}]",
                field=f"metadata.{key}",
            )
    if meta.risk > ADVERSARIAL_RISK:
        raise _reject(
            "QUARANTINED",
            f"metadata.risk is {meta.risk:g}, inside Karn's adversarial band (> {ADVERSARIAL_RISK}): "
            "quarantine-only, never compiled",
            field="metadata.risk",
        )


def _check_counts(ir: pb.BlueprintIR, limits: ValidationLimits) -> None:
    if len(ir.nodes) > limits.max_nodes:
        raise _reject(
            "TOO_MANY_NODES",
            f"{len(ir.nodes)} nodes, more than blueprint.max_nodes={limits.max_nodes}; split the blueprint",
            field="nodes",
        )
    if len(ir.inputs) > limits.max_inputs:
        raise _reject("TOO_MANY_INPUTS", f"{len(ir.inputs)} inputs, more than blueprint.max_inputs={limits.max_inputs}", field="inputs")
    if not ir.inputs:
        raise _reject("BAD_SHAPE", "the blueprint declares no inputs; declare at least one TensorSpec", field="inputs")
    if len(ir.outputs) > limits.max_outputs:
        raise _reject("TOO_MANY_OUTPUTS", f"{len(ir.outputs)} outputs, more than blueprint.max_outputs={limits.max_outputs}", field="outputs")
    if not ir.outputs:
        raise _reject("NO_OUTPUTS", "the blueprint declares no outputs; list the values it returns in `outputs`", field="outputs")
    for i, node in enumerate(ir.nodes):
        if len(node.inputs) > limits.max_node_inputs:
            raise _reject("WRONG_ARITY", f"{len(node.inputs)} inputs, more than blueprint.max_node_inputs={limits.max_node_inputs}",
                          node=node.name[:64], field=f"nodes[{i}].inputs")
        if len(node.attrs) > limits.max_attrs_per_node:
            raise _reject("BAD_ATTR", f"{len(node.attrs)} attributes, more than blueprint.max_attrs_per_node={limits.max_attrs_per_node}",
                          node=node.name[:64], field=f"nodes[{i}].attrs")
        for j, attr in enumerate(node.attrs):
            lists = (attr.ints.values, attr.floats.values, attr.strings.values)
            if any(len(values) > limits.max_list_length for values in lists):
                raise _reject("BAD_ATTR", f"attribute list longer than blueprint.max_list_length={limits.max_list_length}",
                              node=node.name[:64], field=f"nodes[{i}].attrs[{j}]")
    for i, spec in enumerate(ir.inputs):
        if not 1 <= len(spec.dims) <= limits.max_rank:
            raise _reject("BAD_SHAPE", f"input has rank {len(spec.dims)}; ranks 1..{limits.max_rank} are supported",
                          node=spec.name[:64], field=f"inputs[{i}].dims")
    if len(ir.metadata.extra) > limits.max_attrs_per_node:
        raise _reject("BAD_METADATA", f"metadata.extra has {len(ir.metadata.extra)} entries, more than {limits.max_attrs_per_node}",
                      field="metadata.extra")


def _strings(ir: pb.BlueprintIR) -> list[tuple[str, str, int]]:
    """(field path, value, limit kind) for every string in the IR; counts are bounded already."""
    out: list[tuple[str, str, int]] = []
    for i, spec in enumerate(ir.inputs):
        out.append((f"inputs[{i}].name", spec.name, 0))
        out.extend((f"inputs[{i}].dims[{j}].symbol", d.symbol, 0) for j, d in enumerate(spec.dims))
    for i, node in enumerate(ir.nodes):
        out.append((f"nodes[{i}].name", node.name, 0))
        out.append((f"nodes[{i}].op", node.op, 0))
        out.extend((f"nodes[{i}].inputs[{j}]", ref, 0) for j, ref in enumerate(node.inputs))
        for j, attr in enumerate(node.attrs):
            out.append((f"nodes[{i}].attrs[{j}].key", attr.key, 0))
            out.append((f"nodes[{i}].attrs[{j}].s", attr.s, 0))
            out.extend((f"nodes[{i}].attrs[{j}].strings[{k}]", s, 0) for k, s in enumerate(attr.strings.values))
    out.extend((f"outputs[{i}]", ref, 0) for i, ref in enumerate(ir.outputs))
    meta = ir.metadata
    for key in ("blueprint_id", "name", "category"):
        out.append((f"metadata.{key}", getattr(meta, key), 0))
    out.append(("metadata.description", meta.description, 1))
    for i, kv in enumerate(meta.extra):
        out.append((f"metadata.extra[{i}].key", kv.key, 0))
        out.append((f"metadata.extra[{i}].value", kv.value, 1))
    return out


def _check_strings(ir: pb.BlueprintIR, limits: ValidationLimits) -> None:
    caps = (limits.max_string_length, limits.max_description_length)
    for path, value, kind in _strings(ir):
        if not isinstance(value, str):
            # proto2 string fields hand back raw bytes when they are not valid UTF-8.
            raise _reject("MALFORMED", "a string field is not valid UTF-8; encode text as UTF-8", field=path)
        if len(value) > caps[kind]:
            raise _reject(
                "STRING_TOO_LONG",
                f"a string of {len(value)} characters, more than the limit of {caps[kind]} "
                f"(blueprint.{'max_string_length' if kind == 0 else 'max_description_length'})",
                field=path,
            )
        if kind == 1 and "\x00" in value:
            raise _reject("MALFORMED", "NUL character in a text field", field=path)


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------


def _check_name(name: str, field: str, what: str) -> None:
    if not NAME_RE.fullmatch(name):
        raise _reject(
            "BAD_NAME",
            f"{what} name {_short(name)} is not allowed; use letters, digits, '_', '.', '-', '/' "
            "(no ':', which selects an output of a multi-output node)",
            node=name[:64] or None,
            field=field,
        )


def _inputs(ir: pb.BlueprintIR, limits: ValidationLimits) -> tuple[tuple[InputDecl, ...], SymbolRange | None, int]:
    decls: list[InputDecl] = []
    symbol: SymbolRange | None = None
    float_dtype: int | None = None
    for i, spec in enumerate(ir.inputs):
        _check_name(spec.name, f"inputs[{i}].name", "input")
        field = f"inputs[{i}].dtype"
        if spec.dtype in FLOAT_DTYPES:
            if float_dtype is None:
                float_dtype = spec.dtype
            elif spec.dtype != float_dtype:
                raise _reject(
                    "BAD_DTYPE",
                    f"input is {pb.DType.Name(spec.dtype)} but an earlier input is {pb.DType.Name(float_dtype)}; "
                    "all floating-point inputs share one dtype (the parameters' dtype)",
                    node=spec.name,
                    field=field,
                )
        elif spec.dtype not in INDEX_DTYPES:
            name = pb.DType.Name(spec.dtype) if spec.dtype in pb.DType.values() else str(spec.dtype)
            raise _reject(
                "BAD_DTYPE",
                f"input dtype {name} is not supported; use DTYPE_FLOAT32, DTYPE_BFLOAT16, DTYPE_FLOAT16, "
                "DTYPE_FLOAT64, or DTYPE_INT64/DTYPE_INT32 for indices",
                node=spec.name,
                field=field,
            )
        dims: list[int | None] = []
        for j, d in enumerate(spec.dims):
            field = f"inputs[{i}].dims[{j}]"
            if d.symbol:
                _check_name(d.symbol, field + ".symbol", "symbol")
                if not (d.HasField("min") and d.HasField("max")):
                    raise _reject("BAD_SHAPE", f"symbolic dim {d.symbol!r} needs both min and max", node=spec.name, field=field)
                if not 1 <= d.min <= d.max <= limits.max_dim_size:
                    raise _reject(
                        "BAD_SHAPE",
                        f"symbolic dim {d.symbol!r} has range [{d.min}, {d.max}]; it needs 1 <= min <= max <= "
                        f"{limits.max_dim_size} (blueprint.max_dim_size)",
                        node=spec.name,
                        field=field,
                    )
                if d.HasField("size") and not d.min <= d.size <= d.max:
                    raise _reject("BAD_SHAPE", f"example size {d.size} is outside [{d.min}, {d.max}]", node=spec.name, field=field + ".size")
                example = d.size if d.HasField("size") else min(d.max, max(d.min, DEFAULT_EXAMPLE_BATCH))
                this = SymbolRange(d.symbol, d.min, d.max, example)
                if symbol is None:
                    symbol = this
                elif this != symbol:
                    what = "a second symbolic dim" if this.name != symbol.name else "a different range or example size"
                    raise _reject(
                        "BAD_SHAPE",
                        f"{what} ({d.symbol!r} [{d.min}, {d.max}] size {example}); a blueprint has one symbolic "
                        f"dim (the batch), declared identically everywhere ({symbol.name!r} [{symbol.min}, {symbol.max}] "
                        f"size {symbol.example})",
                        node=spec.name,
                        field=field,
                    )
                dims.append(None)
            else:
                if d.HasField("min") or d.HasField("max"):
                    raise _reject("BAD_SHAPE", "min/max only apply to a symbolic dim; give it a `symbol`", node=spec.name, field=field)
                if not d.HasField("size") or not 1 <= d.size <= limits.max_dim_size:
                    raise _reject(
                        "BAD_SHAPE",
                        f"dimension size {d.size if d.HasField('size') else 'missing'}; a fixed dim needs "
                        f"1 <= size <= {limits.max_dim_size}, or a `symbol` with min/max",
                        node=spec.name,
                        field=field,
                    )
                dims.append(int(d.size))
        decls.append(InputDecl(spec.name, int(spec.dtype), tuple(dims)))
    return tuple(decls), symbol, float_dtype if float_dtype is not None else pb.DTYPE_FLOAT32


# ---------------------------------------------------------------------------------------------
# Graph
# ---------------------------------------------------------------------------------------------


@dataclass
class _Node:
    index: int
    name: str
    op: str
    attrs: dict[str, AttrValue]
    n_out: int
    # Per argument: ("input", input index, 0) or ("node", node index, output index).
    refs: list[tuple[str, int, int]]


def _nodes(ir: pb.BlueprintIR, inputs: Sequence[InputDecl], limits: ValidationLimits) -> list[_Node]:
    names: dict[str, tuple[str, int]] = {}
    for i, decl in enumerate(inputs):
        if decl.name in names:
            raise _reject("DUPLICATE_NAME", f"input name {decl.name!r} is declared twice", node=decl.name, field=f"inputs[{i}].name")
        names[decl.name] = ("input", i)
    nodes: list[_Node] = []
    for i, node in enumerate(ir.nodes):
        _check_name(node.name, f"nodes[{i}].name", "node")
        if node.name in names:
            kind = names[node.name][0]
            raise _reject(
                "DUPLICATE_NAME",
                f"name {node.name!r} is already used by {'an input' if kind == 'input' else 'another node'}; names must be unique",
                node=node.name,
                field=f"nodes[{i}].name",
            )
        names[node.name] = ("node", i)
        op = ALIASES.get(node.op, node.op)
        spec = OPS.get(op)
        if spec is None:
            raise _reject(
                "UNKNOWN_OP",
                f"op {_short(node.op)} is not on the allowlist; supported ops: {', '.join(sorted(OPS))}",
                node=node.name,
                field=f"nodes[{i}].op",
            )
        if not spec.min_inputs <= len(node.inputs) <= spec.max_inputs:
            want = str(spec.min_inputs) if spec.min_inputs == spec.max_inputs else f"{spec.min_inputs}..{spec.max_inputs}"
            raise _reject("WRONG_ARITY", f"op {node.op!r} takes {want} inputs, got {len(node.inputs)}", node=node.name, field=f"nodes[{i}].inputs")
        attrs = parse_attrs(node, i, spec.attrs, limits.max_attrs_per_node, spec.attr_aliases)
        if spec.normalize is not None:
            attrs = spec.normalize(attrs)
        n_out = len(ints_attr(attrs, "sizes")) if spec.multi_output else 1
        nodes.append(_Node(i, node.name, op, attrs, n_out, []))
    for i, node in enumerate(ir.nodes):
        for j, ref in enumerate(node.inputs):
            nodes[i].refs.append(_resolve(ref, names, nodes, node.name, f"nodes[{i}].inputs[{j}]", "DANGLING_INPUT"))
    return nodes


def _resolve(ref: str, names: Mapping[str, tuple[str, int]], nodes: Sequence[_Node], node: str | None, field: str, code: str) -> tuple[str, int, int]:
    m = REF_RE.fullmatch(ref)
    target = names.get(m.group(1)) if m else None
    if m is None or target is None:
        raise _reject(
            code,
            f"{_short(ref)} names no input or node of this blueprint; declare it or fix the reference",
            node=node,
            field=field,
        )
    kind, index = target
    out = int(m.group(2)) if m.group(2) is not None else None
    if kind == "input":
        if out not in (None, 0):
            raise _reject(code, f"{ref!r}: input {m.group(1)!r} has one value, use it without ':{out}'", node=node, field=field)
        return ("input", index, 0)
    n_out = nodes[index].n_out
    if out is None:
        if n_out != 1:
            raise _reject(code, f"{ref!r} has {n_out} outputs; refer to one of them as '{m.group(1)}:0'..'{m.group(1)}:{n_out - 1}'",
                          node=node, field=field)
        out = 0
    if out >= n_out:
        raise _reject(code, f"{ref!r}: node {m.group(1)!r} has only {n_out} output(s)", node=node, field=field)
    return ("node", index, out)


def _check_acyclic(nodes: Sequence[_Node]) -> None:
    """Kahn's algorithm; on failure, report one actual cycle."""
    deps = [{r[1] for r in n.refs if r[0] == "node"} for n in nodes]
    users: list[list[int]] = [[] for _ in nodes]
    for i, d in enumerate(deps):
        for j in d:
            users[j].append(i)
    remaining = [len(d) for d in deps]
    ready = [i for i, r in enumerate(remaining) if r == 0]
    done = 0
    while ready:
        i = ready.pop()
        done += 1
        for u in users[i]:
            remaining[u] -= 1
            if remaining[u] == 0:
                ready.append(u)
    if done == len(nodes):
        return
    # Walk dependencies among unfinished nodes until one repeats: that closes a cycle.
    start = next(i for i, r in enumerate(remaining) if r > 0)
    seen: dict[int, int] = {}
    path: list[int] = []
    cur = start
    while cur not in seen:
        seen[cur] = len(path)
        path.append(cur)
        cur = next(j for j in sorted(deps[cur]) if remaining[j] > 0)
    cycle = path[seen[cur]:] + [cur]
    names = " <- ".join(nodes[i].name for i in cycle)
    first = nodes[cycle[0]]
    raise _reject(
        "CYCLE",
        f"the graph has a cycle ({names}); a blueprint must be a DAG: break the loop",
        node=first.name,
        field=f"nodes[{first.index}].inputs",
    )


def _canonical_order(nodes: Sequence[_Node], outputs: Sequence[tuple[str, int, int]]) -> list[int]:
    """Post-order DFS from the outputs in order, visiting arguments in order.

    The order depends only on the graph's structure (never on names or on the order nodes are
    declared), so it is the renaming the digest and the parameter initialisation use.
    """
    order: list[int] = []
    state = [0] * len(nodes)  # 0 new, 1 on stack, 2 emitted
    for kind, root, _ in outputs:
        if kind != "node" or state[root]:
            continue
        stack: list[tuple[int, int]] = [(root, 0)]
        state[root] = 1
        while stack:
            i, arg = stack[-1]
            refs = nodes[i].refs
            if arg < len(refs):
                stack[-1] = (i, arg + 1)
                kind_j, j, _ = refs[arg]
                if kind_j == "node" and state[j] == 0:
                    state[j] = 1
                    stack.append((j, 0))
            else:
                stack.pop()
                state[i] = 2
                order.append(i)
    for n in nodes:
        if state[n.index] == 0:
            raise _reject(
                "UNUSED_NODE",
                f"node {n.name!r} does not contribute to any output; remove it or add it to `outputs`",
                node=n.name,
                field=f"nodes[{n.index}]",
            )
    return order


# ---------------------------------------------------------------------------------------------
# Shapes and budgets
# ---------------------------------------------------------------------------------------------


def _infer(
    inputs: Sequence[InputDecl],
    steps: Sequence[Step],
    batch: int | None,
    ctx: RuleContext,
    limits: ValidationLimits,
    symbol: SymbolRange | None,
) -> tuple[list[TensorInfo], int, int, int]:
    """Slot shapes at one batch size, with parameters, FLOPs and activation bytes there."""
    infos: list[TensorInfo] = [TensorInfo(d.shape(batch), d.dtype) for d in inputs]
    params = flops = 0
    at = f" at {symbol.name}={batch}" if symbol is not None else ""
    for step in steps:
        spec = OPS[step.op]
        ins = [infos[s] for s in step.in_slots]
        for arg, info in enumerate(ins):
            if info.dtype in INDEX_DTYPES and (spec.index_bound is None or arg != 0):
                raise _reject(
                    "BAD_DTYPE",
                    f"op {step.op!r} receives integer indices as input {arg}; integer inputs may only feed "
                    "embedding or embedding_bag",
                    node=step.name,
                    field=f"nodes[{step.position}].inputs[{arg}]",
                )
        try:
            outs = spec.infer(step.attrs, ins, ctx)
        except RuleError as exc:
            field = f"nodes[{step.position}]." + (
                exc.field if exc.field and exc.field.startswith("inputs") else f"attrs.{exc.field}" if exc.field else "inputs"
            )
            raise _reject(exc.code, f"{exc}{at}", node=step.name, field=field) from None
        for out in outs:
            if len(out.shape) > limits.max_rank or any(s < 1 for s in out.shape):
                raise _reject("SHAPE_MISMATCH", f"op {step.op!r} would produce shape {list(out.shape)}{at}", node=step.name,
                              field=f"nodes[{step.position}]")
        infos.extend(outs)
        params += spec.params(step.attrs, ins)
        flops += spec.flops(step.attrs, ins, outs)
    activation = sum(info.nbytes for info in infos)
    return infos, params, flops, activation


def analyze(ir: pb.BlueprintIR, limits: ValidationLimits | None = None) -> Analysis:
    """Check `ir` and return what the checks established; raises only `BlueprintRejected`."""
    limits = limits or ValidationLimits()
    try:
        return _analyze(ir, limits)
    except BlueprintRejected:
        raise
    except Exception as exc:  # noqa: BLE001 - the contract is that nothing else escapes
        raise BlueprintRejected(
            "INTERNAL",
            f"the validator failed on this input ({type(exc).__name__}: {str(exc)[:200]}); "
            "this is a Tezzeret bug, please report it with the blueprint",
        ) from exc


def _analyze(ir: pb.BlueprintIR, limits: ValidationLimits) -> Analysis:
    _check_envelope(ir)
    _check_strings(ir, limits)
    _check_counts(ir, limits)
    _check_policy(ir.metadata)
    inputs, symbol, compute_dtype = _inputs(ir, limits)
    nodes = _nodes(ir, inputs, limits)
    _check_acyclic(nodes)
    names: dict[str, tuple[str, int]] = {d.name: ("input", i) for i, d in enumerate(inputs)}
    names.update({n.name: ("node", n.index) for n in nodes})
    outputs = [_resolve(ref, names, nodes, ref[:64], f"outputs[{i}]", "UNREACHABLE_OUTPUT") for i, ref in enumerate(ir.outputs)]
    order = _canonical_order(nodes, outputs)

    # Slots: inputs first, then each node's outputs in canonical order.
    first_slot: dict[int, int] = {}
    next_slot = len(inputs)
    for i in order:
        first_slot[i] = next_slot
        next_slot += nodes[i].n_out

    def slot(ref: tuple[str, int, int]) -> int:
        kind, index, out = ref
        return index if kind == "input" else first_slot[index] + out

    steps = tuple(
        Step(
            position=pos,
            name=nodes[i].name,
            op=nodes[i].op,
            attrs=nodes[i].attrs,
            in_slots=tuple(slot(r) for r in nodes[i].refs),
            out_slots=tuple(range(first_slot[i], first_slot[i] + nodes[i].n_out)),
        )
        for pos, i in enumerate(order)
    )
    output_slots = tuple(slot(r) for r in outputs)

    ctx = RuleContext(compute_dtype=compute_dtype)
    batches = sorted({symbol.min, symbol.example, symbol.max}) if symbol else [0]
    # The example batch first: its shapes are the ones the module is built from.
    if symbol:
        batches.remove(symbol.example)
        batches.insert(0, symbol.example)
    slot_infos: dict[int, tuple[TensorInfo, ...]] = {}
    params_at: dict[int, int] = {}
    flops_at: dict[int, int] = {}
    act_at: dict[int, int] = {}
    for b in batches:
        infos, params, flops, act = _infer(inputs, steps, b if symbol else None, ctx, limits, symbol)
        slot_infos[b], params_at[b], flops_at[b], act_at[b] = tuple(infos), params, flops, act
    if len(set(params_at.values())) > 1:
        raise _reject(
            "SHAPE_MISMATCH",
            f"parameter shapes depend on the batch size ({params_at}); no layer may size its weights "
            "from the symbolic dimension",
            field="nodes",
        )
    params = params_at[batches[0]]
    worst = max(batches)
    _check_budgets(params, flops_at[worst], act_at[worst], limits, symbol, worst)

    bounds: list[int | None] = [None] * len(inputs)
    for step in steps:
        spec = OPS[step.op]
        if spec.index_bound is not None and step.in_slots[0] < len(inputs):
            i = step.in_slots[0]
            bound = spec.index_bound(step.attrs)
            prev = bounds[i]
            bounds[i] = bound if prev is None else min(prev, bound)
    return Analysis(
        inputs=inputs,
        symbol=symbol,
        compute_dtype=compute_dtype,
        steps=steps,
        output_slots=output_slots,
        output_names=tuple(ir.outputs),
        slot_infos=slot_infos,
        index_bounds=tuple(bounds),
        parameters=params,
        flops=flops_at,
        activation_bytes=act_at,
        metadata=_copy_metadata(ir.metadata),
    )


def _copy_metadata(meta: pb.BlueprintMetadata) -> pb.BlueprintMetadata:
    # A copy, so an Analysis never changes when the caller later edits its IR.
    out = pb.BlueprintMetadata()
    out.CopyFrom(meta)
    return out


def _check_budgets(params: int, flops: int, act: int, limits: ValidationLimits, symbol: SymbolRange | None, batch: int) -> None:
    at = f" at {symbol.name}={batch}" if symbol else ""
    if params > limits.max_parameters:
        raise _reject(
            "TOO_MANY_PARAMS",
            f"{params:,} parameters, more than blueprint.max_parameters={limits.max_parameters:,}; narrow the layers",
            field="nodes",
        )
    if flops > limits.max_flops:
        raise _reject(
            "TOO_MANY_FLOPS",
            f"{flops:.3g} FLOPs per forward{at}, more than blueprint.max_flops={limits.max_flops:.3g}; "
            "shrink the layers or the batch range",
            field="nodes",
        )
    mb = act / (1 << 20)
    if mb > limits.max_activation_mb:
        raise _reject(
            "TOO_MUCH_MEMORY",
            f"{mb:,.1f} MiB of activations{at}, more than blueprint.max_activation_mb={limits.max_activation_mb:g}; "
            "shrink the tensors or the batch range",
            field="inputs",
        )
