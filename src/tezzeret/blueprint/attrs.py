"""Attribute schemas: the typed, bounded form of a node's `attrs`.

Owns `AttrSpec` (type, bounds, default of one attribute) and `parse_attrs`, which turns the
protobuf `Attr` list into a plain dict of normalised Python values (defaults filled, scalar ints
widened to tuples where a pair is expected, ints accepted for floats, a scalar accepted for a list),
and the typed readers (`int_attr`, `ints_attr`, ...) through which shape rules and builders read
those values. It must never import torch and never trust a value it has not checked: every number
is finite and inside its bounds, and every value read has the kind the reader promises.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TypeGuard

from tezzeret.blueprint.errors import BlueprintRejected
from tezzeret.leyline import pb

Kind = Literal["int", "float", "bool", "str", "ints", "floats"]
AttrValue = int | float | bool | str | tuple[int, ...] | tuple[float, ...] | None
Attrs = Mapping[str, AttrValue]


class Required:
    """The marker type of `REQUIRED` (an attribute without a default)."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED = Required()

# Bound on plain ints: exact in a float64, and far above any real layer, so that an oversized
# layer is refused by the parameter/FLOP/memory budgets (which name the budget) rather than here.
INT_LIMIT = 1 << 53


@dataclass(frozen=True)
class AttrSpec:
    kind: Kind
    default: AttrValue | Required = REQUIRED
    lo: float | None = None
    hi: float | None = None
    # Whether `lo` / `hi` themselves are allowed: open (exclusive) bounds, e.g. a scale > 0 or a
    # dropout probability < 1. `tezzeret ops --json` prints them as min_exclusive / max_exclusive.
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple[str, ...] | None = None
    # ints / floats: allowed lengths; `expand` turns a scalar into a tuple of that length.
    min_len: int = 1
    max_len: int = 8
    expand: int | None = None
    doc: str = ""
    # A restatement of something the input shapes already fix (torch's `in_features` and the
    # like): accepted when consistent, and left out of the canonical form.
    redundant: bool = False


def _where(node: str, index: int, key: str) -> str:
    return f"nodes[{index}].attrs.{key}"


def _check_number(value: float, spec: AttrSpec, node: str, field: str, key: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise BlueprintRejected(
            "BAD_ATTR",
            f"attribute {key!r} is {value}; use a finite number",
            node=node,
            field=field,
        )
    if not isinstance(value, float) and abs(value) > INT_LIMIT:
        raise BlueprintRejected(
            "BAD_ATTR",
            f"attribute {key!r} is {value}; integers must stay within ±2^53",
            node=node,
            field=field,
        )
    lo_bad = spec.lo is not None and (value < spec.lo or (spec.lo_open and value == spec.lo))
    hi_bad = spec.hi is not None and (value > spec.hi or (spec.hi_open and value == spec.hi))
    if lo_bad or hi_bad:
        lo = "-inf" if spec.lo is None else f"{spec.lo:g}"
        hi = "inf" if spec.hi is None else f"{spec.hi:g}"
        lb = "(" if spec.lo_open else "["
        hb = ")" if spec.hi_open else "]"
        raise BlueprintRejected(
            "BAD_ATTR",
            f"attribute {key!r} is {value!r}, outside the allowed range {lb}{lo}, {hi}{hb}",
            node=node,
            field=field,
        )


def _check_length(n: int, spec: AttrSpec, node: str, field: str, key: str) -> None:
    if not spec.min_len <= n <= spec.max_len:
        raise BlueprintRejected(
            "BAD_ATTR",
            f"attribute {key!r} has {n} values; it needs between {spec.min_len} and {spec.max_len}",
            node=node,
            field=field,
        )


def _convert(attr: pb.Attr, spec: AttrSpec, node: str, field: str) -> AttrValue:
    key = attr.key
    which = attr.WhichOneof("value")
    if which is None:
        raise BlueprintRejected(
            "BAD_ATTR", f"attribute {key!r} has no value; set one of i, f, s, b, ints", node=node, field=field
        )
    wrong = BlueprintRejected(
        "BAD_ATTR",
        f"attribute {key!r} must be {spec.kind}, got the {which!r} form",
        node=node,
        field=field,
    )
    if spec.kind == "int":
        if which != "i":
            raise wrong
        value: AttrValue = int(attr.i)
        _check_number(int(attr.i), spec, node, field, key)
        return value
    if spec.kind == "float":
        if which == "i":
            number = float(attr.i)
        elif which == "f":
            number = float(attr.f)
        else:
            raise wrong
        _check_number(number, spec, node, field, key)
        return number
    if spec.kind == "bool":
        if which != "b":
            raise wrong
        return bool(attr.b)
    if spec.kind == "str":
        if which != "s":
            raise wrong
        if spec.choices is not None and attr.s not in spec.choices:
            raise BlueprintRejected(
                "BAD_ATTR",
                f"attribute {key!r} is {attr.s[:40]!r}; choose one of {', '.join(spec.choices)}",
                node=node,
                field=field,
            )
        return str(attr.s)
    if spec.kind == "floats":
        if which in ("i", "f"):
            numbers: tuple[float, ...] = (float(attr.i if which == "i" else attr.f),) * (spec.expand or 1)
        elif which in ("floats", "ints"):
            numbers = tuple(float(v) for v in (attr.floats if which == "floats" else attr.ints).values)
            if spec.expand is not None and len(numbers) == 1:
                numbers = numbers * spec.expand
        else:
            raise wrong
        _check_length(len(numbers), spec, node, field, key)
        for number in numbers:
            _check_number(number, spec, node, field, key)
        return numbers
    # ints
    if which == "i":
        # A scalar stands for a one-element list, or for every entry of a pair.
        values: tuple[int, ...] = (int(attr.i),) * (spec.expand or 1)
    elif which == "ints":
        values = tuple(int(v) for v in attr.ints.values)
        if spec.expand is not None and len(values) == 1:
            values = values * spec.expand
    else:
        raise wrong
    _check_length(len(values), spec, node, field, key)
    for v in values:
        _check_number(v, spec, node, field, key)
    return values


def parse_attrs(
    node_pb: pb.Node,
    index: int,
    schema: Mapping[str, AttrSpec],
    max_attrs: int,
    aliases: Mapping[str, str] | None = None,
) -> dict[str, AttrValue]:
    """Checked, normalised attributes of one node; raises `BlueprintRejected(BAD_ATTR)`.

    `aliases` maps other spellings of a key (torch's `dim` for `dims`) to the schema's key.
    """
    node = node_pb.name
    if len(node_pb.attrs) > max_attrs:
        raise BlueprintRejected(
            "BAD_ATTR",
            f"{len(node_pb.attrs)} attributes, more than the limit of {max_attrs}",
            node=node,
            field=f"nodes[{index}].attrs",
        )
    out: dict[str, AttrValue] = {}
    for attr in node_pb.attrs:
        field = _where(node, index, attr.key)
        key = (aliases or {}).get(attr.key, attr.key)
        spec = schema.get(key)
        if spec is None:
            known = ", ".join(sorted(schema)) or "none"
            raise BlueprintRejected(
                "BAD_ATTR",
                f"op {node_pb.op!r} has no attribute {attr.key[:40]!r}; known attributes: {known}",
                node=node,
                field=field,
            )
        if key in out:
            raise BlueprintRejected(
                "BAD_ATTR", f"attribute {key!r} is given twice; keep one", node=node, field=field
            )
        out[key] = _convert(attr, spec, node, field)
    for key, spec in schema.items():
        if key in out:
            continue
        if isinstance(spec.default, Required):
            raise BlueprintRejected(
                "BAD_ATTR",
                f"op {node_pb.op!r} needs attribute {key!r} ({spec.kind}{': ' + spec.doc if spec.doc else ''})",
                node=node,
                field=_where(node, index, key),
            )
        out[key] = spec.default
    return out


# ---------------------------------------------------------------------------------------------
# Typed readers. `parse_attrs` has already checked every value against its schema, so a reader
# finding another kind means an op's rule disagrees with its own schema: a Tezzeret bug, reported
# as `BlueprintRejected(INTERNAL)` naming the key rather than a TypeError deep inside a rule.
# ---------------------------------------------------------------------------------------------


def _misread(key: str, value: object, kind: str) -> BlueprintRejected:
    return BlueprintRejected(
        "INTERNAL",
        f"attribute {key!r} holds {value!r} ({type(value).__name__}) where the op reads {kind}; "
        "this is a Tezzeret bug, please report it with the blueprint",
        field=key,
    )


def _is_int(value: object) -> TypeGuard[int]:
    # bool is an int subclass in Python; an int attribute never holds one.
    return isinstance(value, int) and not isinstance(value, bool)


def as_int(key: str, value: AttrValue) -> int:
    if _is_int(value):
        return value
    raise _misread(key, value, "an int")


def as_float(key: str, value: AttrValue) -> float:
    # An int is accepted for a float (as `parse_attrs` does), and widened.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise _misread(key, value, "a float")


def as_bool(key: str, value: AttrValue) -> bool:
    if isinstance(value, bool):
        return value
    raise _misread(key, value, "a bool")


def as_str(key: str, value: AttrValue) -> str:
    if isinstance(value, str):
        return value
    raise _misread(key, value, "a str")


def as_ints(key: str, value: AttrValue) -> tuple[int, ...]:
    if isinstance(value, tuple) and all(_is_int(v) for v in value):
        return tuple(int(v) for v in value)
    raise _misread(key, value, "a list of ints")


def as_floats(key: str, value: AttrValue) -> tuple[float, ...]:
    if isinstance(value, tuple) and all(isinstance(v, float) or _is_int(v) for v in value):
        return tuple(float(v) for v in value)
    raise _misread(key, value, "a list of floats")


def int_attr(attrs: Attrs, key: str) -> int:
    return as_int(key, attrs[key])


def float_attr(attrs: Attrs, key: str) -> float:
    return as_float(key, attrs[key])


def bool_attr(attrs: Attrs, key: str) -> bool:
    return as_bool(key, attrs[key])


def str_attr(attrs: Attrs, key: str) -> str:
    return as_str(key, attrs[key])


def ints_attr(attrs: Attrs, key: str) -> tuple[int, ...]:
    return as_ints(key, attrs[key])


def floats_attr(attrs: Attrs, key: str) -> tuple[float, ...]:
    return as_floats(key, attrs[key])


def single_attr(attrs: Attrs, key: str) -> tuple[int]:
    """A one-element `ints` attribute (a 1-d kernel, stride, ...), in the form torch's 1-d layers take."""
    value = ints_attr(attrs, key)
    if len(value) != 1:
        raise _misread(key, value, "one int")
    return (value[0],)


def pair_attr(attrs: Attrs, key: str) -> tuple[int, int]:
    """A two-element `ints` attribute (a 2-d kernel, stride, ...), in the form torch's 2-d layers take."""
    value = ints_attr(attrs, key)
    if len(value) != 2:
        raise _misread(key, value, "two ints")
    return (value[0], value[1])


def optional_ints_attr(attrs: Attrs, key: str) -> tuple[int, ...] | None:
    """An optional `ints` attribute: None when unset (or absent)."""
    value = attrs.get(key)
    return None if value is None else as_ints(key, value)


def optional_floats_attr(attrs: Attrs, key: str) -> tuple[float, ...] | None:
    """An optional `floats` attribute: None when unset (or absent)."""
    value = attrs.get(key)
    return None if value is None else as_floats(key, value)


def attr_to_pb(key: str, spec: AttrSpec, value: AttrValue) -> pb.Attr | None:
    """The canonical protobuf form of one normalised value (None: an unset optional attribute)."""
    if value is None:
        return None
    attr = pb.Attr(key=key)
    if spec.kind == "int":
        attr.i = as_int(key, value)
    elif spec.kind == "float":
        attr.f = as_float(key, value)
    elif spec.kind == "bool":
        attr.b = as_bool(key, value)
    elif spec.kind == "str":
        attr.s = as_str(key, value)
    elif spec.kind == "floats":
        attr.floats.values.extend(as_floats(key, value))
    else:
        attr.ints.values.extend(as_ints(key, value))
    return attr
