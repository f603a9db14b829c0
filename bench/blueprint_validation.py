"""Blueprint validation benchmark: how long validation takes per input, worst case included.

Prints one JSON line with:
- library_validate_ms_p50 / _max: `validate` on each built-in blueprint (parse excluded);
- library_load_ms_max: `load_blueprint` from the JSON file (read, parse, validate);
- build_module_ms_p50 / _max: `build_module` (validation + layer construction + init);
- hostile_ms_max and its file: the slowest file of tests/blueprint/hostile;
- fuzz_ms_p50 / _p99 / _max over N random byte strings and N random/mutated JSON documents
  (seeded), which is the "bounded time per input" the validator promises;
- big_inputs: 100k-node JSON, a 10 MB string, a 16 MB JSON array, 5000-deep nesting.
Also records the machine: CPU model, cores, Python and torch versions.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

from tezzeret.blueprint import BlueprintRejected, build_module, library, load_blueprint, validate
from tezzeret.leyline import encode

from machine_info import machine  # bench/ is sys.path[0] when a benchmark runs as a script

ROOT = Path(__file__).resolve().parent.parent


def timed(fn, *args) -> float:  # noqa: ANN001
    t0 = time.perf_counter()
    try:
        fn(*args)
    except BlueprintRejected:
        pass
    return (time.perf_counter() - t0) * 1000


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 3)


def random_json(rnd: random.Random, depth: int = 0) -> object:
    kind = rnd.randrange(7 if depth < 6 else 4)
    if kind == 0:
        return None
    if kind == 1:
        return rnd.random() * 10 ** rnd.randrange(-3, 30)
    if kind == 2:
        return rnd.choice(["x", "linear", "DTYPE_FLOAT32", "", "n0:1", "a" * rnd.randrange(300)])
    if kind == 3:
        return rnd.randrange(-(1 << 40), 1 << 40)
    keys = ["schema_version", "inputs", "nodes", "outputs", "metadata", "name", "op", "attrs", "dims", "size", "i", "ints"]
    if kind in (4, 5):
        return {rnd.choice(keys): random_json(rnd, depth + 1) for _ in range(rnd.randrange(5))}
    return [random_json(rnd, depth + 1) for _ in range(rnd.randrange(5))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fuzz", type=int, default=3000, help="random inputs of each kind")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rnd = random.Random(args.seed)

    lib = library()
    val_ms = [timed(validate, lb.ir) for lb in lib for _ in range(3)]
    load_ms = [timed(load_blueprint, lb.path) for lb in lib]
    build_ms = [timed(build_module, lb.ir) for lb in lib]

    hostile = sorted((ROOT / "tests" / "blueprint" / "hostile").glob("*.*"))
    hostile = [p for p in hostile if p.suffix in (".json", ".bin") and p.name != "expected.json"]
    hostile_ms = {p.name: timed(load_blueprint, p) for p in hostile}
    worst_hostile = max(hostile_ms, key=hostile_ms.__getitem__)

    lib_bytes = [encode(lb.ir) for lb in lib]
    fuzz_ms: list[float] = []
    for _ in range(args.fuzz):
        data = bytearray(rnd.choice(lib_bytes))
        for _ in range(rnd.randrange(1, 4)):
            data[rnd.randrange(len(data))] ^= 1 << rnd.randrange(8)
        fuzz_ms.append(timed(load_blueprint, bytes(data)))
        fuzz_ms.append(timed(load_blueprint, rnd.randbytes(rnd.randrange(1, 4096))))
        fuzz_ms.append(timed(load_blueprint, json.dumps(random_json(rnd))))

    nodes = [{"name": f"r{i}", "op": "relu", "inputs": [f"r{i - 1}" if i else "x"]} for i in range(100_000)]
    big = {
        "nodes_100k": json.dumps({"schema_version": 1, "nodes": nodes}),
        "string_10mb": json.dumps({"schema_version": 1, "metadata": {"description": "A" * (10 << 20)}}),
        "array_16mb": "[" + "1," * ((16 << 20) // 2 - 2) + "1]",
        "nesting_5000": "{\"a\":" * 5000 + "1" + "}" * 5000,
    }
    big_ms = {k: round(timed(load_blueprint, v), 1) for k, v in big.items()}

    print(json.dumps({
        "bench": "blueprint_validation",
        "library_size": len(lib),
        "library_validate_ms_p50": pct(val_ms, 0.5),
        "library_validate_ms_max": round(max(val_ms), 3),
        "library_load_ms_max": round(max(load_ms), 3),
        "build_module_ms_p50": pct(build_ms, 0.5),
        "build_module_ms_max": round(max(build_ms), 3),
        "hostile_files": len(hostile),
        "hostile_ms_max": round(hostile_ms[worst_hostile], 3),
        "hostile_slowest": worst_hostile,
        "fuzz_inputs": len(fuzz_ms),
        "fuzz_ms_p50": pct(fuzz_ms, 0.5),
        "fuzz_ms_p99": pct(fuzz_ms, 0.99),
        "fuzz_ms_max": round(max(fuzz_ms), 3),
        "big_inputs_ms": big_ms,
        "machine": machine(),
    }))


if __name__ == "__main__":
    sys.exit(main())
