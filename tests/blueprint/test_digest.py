"""Canonical digest: invariant under renaming and reordering, sensitive to every semantic change."""

from __future__ import annotations

import copy
import json
import random

import torch
from google.protobuf import json_format
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tezzeret.blueprint import BlueprintRejected, build_module, canonical_ir, digest, library, validate
from tezzeret.blueprint.ops import OPS
from tezzeret.leyline import from_json, pb

from blueprint_helpers import blueprint, node, tensor, to_ir

LIB: dict[str, dict] = {
    lb.name: json_format.MessageToDict(lb.ir, preserving_proto_field_name=True) for lb in library()
}
NAMES = sorted(LIB)
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])


def ir_of(doc: dict) -> pb.BlueprintIR:
    return from_json(pb.BlueprintIR, json.dumps(doc))


def rename_and_shuffle(doc: dict, rnd: random.Random) -> dict:
    doc = copy.deepcopy(doc)
    old = [i["name"] for i in doc["inputs"]] + [n["name"] for n in doc["nodes"]]
    new: dict[str, str] = {}
    for name in old:
        while True:
            cand = rnd.choice(["v", "layer", "blk", "t"]) + f"_{rnd.getrandbits(40):x}"
            if cand not in new.values():
                new[name] = cand
                break

    def ref(r: str) -> str:
        base, sep, idx = r.partition(":")
        return new[base] + sep + idx

    for i in doc["inputs"]:
        i["name"] = new[i["name"]]
        for d in i["dims"]:
            if "symbol" in d:
                d["symbol"] = "rows"
    for n in doc["nodes"]:
        n["name"] = new[n["name"]]
        n["inputs"] = [ref(r) for r in n["inputs"]]
        rnd.shuffle(n.get("attrs", []))
    doc["outputs"] = [ref(r) for r in doc["outputs"]]
    # Nodes may be declared in any order: references are by name, not position.
    rnd.shuffle(doc["nodes"])
    return doc


@SETTINGS
@given(name=st.sampled_from(NAMES), seed=st.integers(0, 2**32 - 1))
def test_renaming_and_reordering_keep_digest_and_weights(name: str, seed: int) -> None:
    rnd = random.Random(seed)
    doc = LIB[name]
    moved = rename_and_shuffle(doc, rnd)
    a, b = ir_of(doc), ir_of(moved)
    assert digest(a) == digest(b)
    assert canonical_ir(a) == canonical_ir(b)
    sa, sb = build_module(a).state_dict(), build_module(b).state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


META_CHANGES = st.fixed_dictionaries(
    {},
    optional={
        "name": st.text(alphabet="abcxyz_", min_size=1, max_size=20),
        # NUL is refused in text fields (the test after this one); any other text is fine.
        "description": st.text(st.characters(blacklist_characters="\x00"), max_size=200),
        "category": st.sampled_from(["mlp", "conv", "attention", "other"]),
        "blueprint_id": st.text(alphabet="abc0123.", max_size=30),
        "value": st.floats(0, 100),
        "tamiyo_interest": st.floats(0, 1),
        "risk": st.floats(0, 0.8),
        "tier": st.sampled_from(["TIER_SAFE", "TIER_EXPERIMENTAL", "TIER_HIGH_RISK"]),
    },
)


@SETTINGS
@given(name=st.sampled_from(NAMES), changes=META_CHANGES)
def test_descriptive_metadata_does_not_change_digest(name: str, changes: dict) -> None:
    doc = copy.deepcopy(LIB[name])
    doc["metadata"].update(changes)
    assert digest(ir_of(doc)) == digest(ir_of(LIB[name]))


def test_a_nul_in_a_description_is_refused_by_name() -> None:
    doc = copy.deepcopy(LIB[NAMES[0]])
    doc["metadata"]["description"] = "fine until\x00here"
    try:
        digest(ir_of(doc))
    except BlueprintRejected as exc:
        assert exc.code == "MALFORMED" and "metadata.description" in str(exc), exc
    else:
        raise AssertionError("a NUL in the description was accepted")


def _mutate_attr(doc: dict, rnd: random.Random) -> bool:
    candidates = [(n, a) for n in doc["nodes"] for a in n.get("attrs", []) if any(k in a for k in ("i", "f", "b", "ints"))]
    if not candidates:
        return False
    _, a = rnd.choice(candidates)
    if "b" in a:
        a["b"] = not a["b"]
    elif "i" in a:
        a["i"] = str(int(a["i"]) + rnd.choice([1, -1, 2]))
    elif "f" in a:
        a["f"] = float(a["f"]) * 1.5 + 0.01
    else:
        vals = a["ints"]["values"]
        j = rnd.randrange(len(vals))
        vals[j] = str(int(vals[j]) + rnd.choice([1, -1]))
    return True


def _mutate_attr_add(doc: dict, rnd: random.Random) -> bool:
    # Set an optional attribute to a non-default value.
    for n in rnd.sample(doc["nodes"], len(doc["nodes"])):
        have = {a["key"] for a in n.get("attrs", [])}
        for key, spec in OPS[n["op"]].attrs.items():
            if key in have or spec.kind != "bool" or spec.default is None:
                continue
            n.setdefault("attrs", []).append({"key": key, "b": not spec.default})
            return True
    return False


def _mutate_shape(doc: dict, rnd: random.Random) -> bool:
    spec = rnd.choice(doc["inputs"])
    d = rnd.choice(spec["dims"])
    if "symbol" in d:
        key = rnd.choice(["min", "max", "size"])
        d[key] = str(int(d.get(key, 8)) + rnd.choice([1, -1]))
    else:
        d["size"] = str(int(d["size"]) * 2)
    return True


ACTIVATIONS = ["relu", "gelu", "silu", "tanh", "sigmoid", "identity"]


def _mutate_op(doc: dict, rnd: random.Random) -> bool:
    acts = [n for n in doc["nodes"] if n["op"] in ACTIVATIONS and not n.get("attrs")]
    if not acts:
        return False
    n = rnd.choice(acts)
    n["op"] = rnd.choice([a for a in ACTIVATIONS if a != n["op"]])
    return True


def _mutate_edge(doc: dict, rnd: random.Random) -> bool:
    uses: dict[str, int] = {}
    for n in doc["nodes"]:
        for r in n["inputs"]:
            uses[r] = uses.get(r, 0) + 1
    for r in doc["outputs"]:
        uses[r] = uses.get(r, 0) + 1
    # Swap the arguments of a two-input node, or re-point an argument whose source stays in use.
    swappable = [n for n in doc["nodes"] if len(n["inputs"]) == 2 and n["inputs"][0] != n["inputs"][1]]
    rewirable = [(n, j) for n in doc["nodes"] for j, r in enumerate(n["inputs"]) if uses[r] > 1]
    if swappable and (not rewirable or rnd.random() < 0.5):
        n = rnd.choice(swappable)
        n["inputs"].reverse()
        return True
    if not rewirable:
        return False
    n, j = rnd.choice(rewirable)
    values = [i["name"] for i in doc["inputs"]] + [m["name"] for m in doc["nodes"] if m["op"] != "split"]
    choices = [v for v in values if v not in (n["inputs"][j], n["name"])]
    n["inputs"][j] = rnd.choice(choices)
    return True


MUTATIONS = {"attr": _mutate_attr, "attr_add": _mutate_attr_add, "shape": _mutate_shape, "op": _mutate_op, "edge": _mutate_edge}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(name=st.sampled_from(NAMES), kind=st.sampled_from(sorted(MUTATIONS)), seed=st.integers(0, 2**32 - 1))
def test_semantic_changes_change_digest(name: str, kind: str, seed: int) -> None:
    rnd = random.Random(seed)
    doc = copy.deepcopy(LIB[name])
    assume(MUTATIONS[kind](doc, rnd))
    try:
        changed = digest(ir_of(doc))
    except BlueprintRejected:
        assume(False)
        return
    assert changed != digest(ir_of(LIB[name]))


def test_each_kind_of_change_on_a_fixed_blueprint() -> None:
    base = blueprint(
        [tensor("x", 64)],
        [node("fc", "linear", ["x"], out_features=32), node("act", "relu", ["fc"]), node("out", "add", ["act", "fc"])],
        ["out"],
    )
    d0 = digest(to_ir(base))
    variants = {
        "attr": lambda d: d["nodes"][0]["attrs"].__setitem__(0, {"key": "out_features", "i": 33}),
        "default made explicit is not a change": None,
        "shape": lambda d: d["inputs"][0]["dims"][1].update(size=65),
        "batch range": lambda d: d["inputs"][0]["dims"][0].update(max=32),
        "dtype": lambda d: d["inputs"][0].update(dtype="DTYPE_FLOAT64"),
        "edge": lambda d: d["nodes"][2].update(inputs=["fc", "act"]),
        "op": lambda d: d["nodes"][1].update(op="gelu"),
        "init_seed": lambda d: d["metadata"].update(init_seed="2"),
        "output": lambda d: d.update(outputs=["out", "act"]),
    }
    seen = {d0}
    for label, change in variants.items():
        doc = copy.deepcopy(base)
        if change is None:
            doc["nodes"][0]["attrs"].append({"key": "bias", "b": True})
            assert digest(to_ir(doc)) == d0, label
            continue
        change(doc)
        d = digest(to_ir(doc))
        assert d not in seen, label
        seen.add(d)


def test_init_seed_changes_weights_and_same_seed_repeats() -> None:
    doc = LIB["mlp_512"]
    a = build_module(ir_of(doc)).state_dict()
    b = build_module(ir_of(doc)).state_dict()
    other = copy.deepcopy(doc)
    other["metadata"]["init_seed"] = "99"
    c = build_module(ir_of(other)).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["layers.n0.weight"], c["layers.n0.weight"])


def test_summary_digest_equals_digest() -> None:
    for name in NAMES[:5]:
        ir = ir_of(LIB[name])
        assert validate(ir).digest == digest(ir)


def test_every_mutation_kind_yields_valid_changed_blueprints() -> None:
    # Guards the property test above against vacuity: each kind must often produce a valid IR.
    for kind, mutate in MUTATIONS.items():
        valid = 0
        for seed in range(40):
            rnd = random.Random(seed)
            name = rnd.choice(NAMES)
            doc = copy.deepcopy(LIB[name])
            if not mutate(doc, rnd):
                continue
            try:
                changed = digest(ir_of(doc))
            except BlueprintRejected:
                continue
            assert changed != digest(ir_of(LIB[name])), (kind, name, seed)
            valid += 1
        assert valid >= 5, kind
