"""The public API: load from every source form, summaries, shapes, deterministic inputs and weights."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tezzeret.blueprint import (
    BlueprintRejected,
    ValidationLimits,
    batch_range,
    build_module,
    digest,
    example_inputs,
    input_shapes,
    library_blueprint,
    load_blueprint,
    validate,
)
from tezzeret.config import load_settings
from tezzeret.leyline import encode, pb, to_json

from blueprint_helpers import blueprint, node, tensor, to_ir

MLP = library_blueprint("mlp_512")


def test_load_from_path_str_text_and_bytes(tmp_path: Path) -> None:
    text = to_json(MLP)
    path = tmp_path / "mlp.json"
    path.write_text(text)
    bin_path = tmp_path / "mlp.pb"
    bin_path.write_bytes(encode(MLP))
    for source in (path, str(path), text, text.encode(), "\n  " + text, encode(MLP), bin_path, "\ufeff" + text):
        assert load_blueprint(source) == MLP


def test_validate_summary() -> None:
    s = validate(MLP)
    assert s.name == "mlp_512" and s.category == "mlp"
    assert s.parameters == 512 * 2048 + 2048 + 2048 * 512 + 512
    assert s.flops == 2 * 8 * (512 * 2048 + 2048 * 512) + 8 * 2048
    assert s.flops_at_max_batch == 8 * s.flops
    assert s.batch_range == (1, 64) and s.example_batch == 8
    assert [(o.name, o.dtype, o.shape) for o in s.outputs] == [("fc2", "DTYPE_FLOAT32", ("batch", 512))]
    assert s.digest == digest(MLP)
    assert json.loads(json.dumps(s.to_dict()))["parameters"] == s.parameters


def test_flattened_batch_shows_as_multiple() -> None:
    ir = to_ir(blueprint([tensor("x", 4, 8)], [node("f", "flatten", ["x"], start_dim=0, end_dim=1)], ["f"]))
    assert validate(ir).outputs[0].shape == ("4*batch", 8)


def test_limits_are_configurable() -> None:
    tight = ValidationLimits(max_parameters=1000)
    with pytest.raises(BlueprintRejected) as info:
        validate(MLP, tight)
    assert info.value.code == "TOO_MANY_PARAMS" and "max_parameters=1,000" in str(info.value)
    settings = load_settings(blueprint={"max_nodes": 2})
    with pytest.raises(BlueprintRejected) as info:
        validate(MLP, settings.blueprint)
    assert info.value.code == "TOO_MANY_NODES"


def test_shapes_and_range() -> None:
    assert batch_range(MLP) == (1, 64)
    assert input_shapes(MLP) == [(8, 512)]
    assert input_shapes(MLP, 64) == [(64, 512)]
    with pytest.raises(ValueError, match="outside"):
        input_shapes(MLP, 65)
    static = to_ir(blueprint([tensor("x", 3, 5, batch=None)], [node("r", "relu", ["x"])], ["r"]))
    assert batch_range(static) == (3, 3)
    assert input_shapes(static) == [(3, 5)]
    assert [t.shape for t in example_inputs(static)] == [torch.Size([3, 5])]


def test_example_inputs_are_deterministic_and_leave_global_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = example_inputs(MLP)
    b = example_inputs(MLP, 8)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.equal(a[0], b[0])
    assert not torch.equal(example_inputs(MLP, 4)[0], a[0][:4])
    ids = example_inputs(library_blueprint("embedding_bag_pool_256"), 64)[0]
    assert ids.dtype == torch.int64 and int(ids.min()) >= 0 and int(ids.max()) < 10000


def test_build_module_leaves_global_rng_alone_and_is_deterministic() -> None:
    torch.manual_seed(5)
    before = torch.random.get_rng_state()
    m1 = build_module(MLP)
    assert torch.equal(torch.random.get_rng_state(), before)
    m2 = build_module(MLP)
    for (k, v), (_, w) in zip(m1.state_dict().items(), m2.state_dict().items(), strict=True):
        assert torch.equal(v, w), k
    assert m1.blueprint_digest == digest(MLP)


def test_weights_identical_across_processes() -> None:
    code = (
        "import torch; from tezzeret.blueprint import build_module, library_blueprint;"
        "m = build_module(library_blueprint('swiglu_mlp_512'));"
        "print(float(sum(p.double().sum() for p in m.parameters())))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    here = build_module(library_blueprint("swiglu_mlp_512"))
    assert float(out) == float(sum(p.detach().double().sum() for p in here.parameters()))


def test_module_class_is_shared_and_picklable(tmp_path: Path) -> None:
    a = build_module(MLP)
    b = build_module(library_blueprint("mhsa_4h_256"))
    assert type(a) is type(b)
    assert type(a).__module__ == "tezzeret.blueprint.module"
    path = tmp_path / "m.pt"
    torch.save(a, path)
    again = torch.load(path, weights_only=False)
    x = example_inputs(MLP)
    torch.testing.assert_close(again(*x), a(*x))


def test_wrong_number_of_inputs() -> None:
    with pytest.raises(TypeError, match="1 input"):
        build_module(MLP)(*example_inputs(MLP), *example_inputs(MLP))


def test_multi_output_and_dtypes() -> None:
    doc = blueprint(
        [tensor("x", 6, dtype="DTYPE_FLOAT64"), tensor("ids", 3, dtype="DTYPE_INT32")],
        [node("parts", "split", ["x"], sizes=[2, 4]), node("e", "embedding", ["ids"], num_embeddings=7, embedding_dim=4),
         node("s", "add", ["parts:1", "e"]) | {"inputs": ["parts:1", "pool"]}, node("pool", "mean", ["e"], dims=[1])],
        ["parts:0", "s"],
    )
    ir = to_ir(doc)
    s = validate(ir)
    assert [o.shape for o in s.outputs] == [("batch", 2), ("batch", 4)]
    assert [o.dtype for o in s.outputs] == ["DTYPE_FLOAT64", "DTYPE_FLOAT64"]
    m = build_module(ir)
    a, b = m(*example_inputs(ir, 5))
    assert a.dtype == b.dtype == torch.float64 and a.shape == (5, 2) and b.shape == (5, 4)
    assert m.layers["n1"].weight.dtype == torch.float64


@pytest.mark.parametrize("dtype", ["DTYPE_BFLOAT16", "DTYPE_FLOAT16"])
def test_low_precision_blueprints_run(dtype: str) -> None:
    doc = blueprint([tensor("x", 16, 32, dtype=dtype)],
                    [node("n", "layer_norm", ["x"]), node("fc", "linear", ["n"], out_features=32), node("a", "gelu", ["fc"])], ["a"])
    ir = to_ir(doc)
    y = build_module(ir)(*example_inputs(ir))
    assert y.dtype == {"DTYPE_BFLOAT16": torch.bfloat16, "DTYPE_FLOAT16": torch.float16}[dtype]
    y.float().sum().backward()


def test_validation_does_not_import_torch() -> None:
    code = (
        "import sys; from tezzeret.blueprint import library, validate;"
        "[validate(lb.ir) for lb in library()]; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    assert out == "False"


def test_unknown_fields_in_memory_are_not_canonical() -> None:
    data = encode(MLP) + b"\xa0\x06\x01"
    ir = pb.BlueprintIR()
    ir.ParseFromString(data)
    with pytest.raises(BlueprintRejected) as info:
        validate(ir)
    assert info.value.code == "NOT_CANONICAL"


def test_not_a_blueprint_object() -> None:
    with pytest.raises(BlueprintRejected) as info:
        validate(pb.KeyValue())  # type: ignore[arg-type]
    assert info.value.code == "MALFORMED"


def test_exercise_runs_every_declared_batch() -> None:
    from tezzeret.blueprint.selfcheck import exercise

    torch.manual_seed(9)
    before = torch.random.get_rng_state()
    result = exercise(library_blueprint("lora_adapter_1024"))
    assert torch.equal(torch.random.get_rng_state(), before)
    assert result.ok and result.error is None
    assert result.batches == (1, 8, 64) and len(result.forward_backward_ms) == 3
