"""Leave-one-out accuracy of the forge's payback predictor over the library.

For each library blueprint compiled at a tier, the predictor (`forge/payback.py`, the settings'
neighbours) sees only the other blueprints' measured compile times, served speed-ups and eager
step times at that tier and predicts this one's; the error is |predicted - measured| / measured.
Prints one JSON line: the median absolute relative error of predicted compile seconds (target
<= 30%), the same for always predicting the median of the others (the baseline a predictor must
beat), per-blueprint numbers, and the machine record.

The measurements come from `bench/tiers.py` lines (`--from results.jsonl`, written with its
`--out`), or are made here: each blueprint compiled at `--tier` in a fresh process, Inductor's
cache shared across the run as the forge's L3 is.

Usage: python bench/predict.py [--from results.jsonl] [--tier fast] [--blueprints a,b]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
import tempfile

from machine_info import machine  # bench/ is sys.path[0] when a benchmark runs as a script


def _measured_from(path: Path, tier: str) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row.get("bench") != "tiers" or row.get("tier") != tier or "error" in row:
            continue
        speedups = [e["speedup_train"] if e["serve_compiled"] else 1.0 for e in row.get("entries", []) if "train" in e["key"]]
        out[row["blueprint"]] = {
            "compile_s": float(row["compile_s"]),
            "served_speedup": statistics.median(speedups) if speedups else None,
        }
    return out


def _measure(names: list[str], tier: str) -> dict[str, dict[str, float | None]]:
    from tiers import _run

    out: dict[str, dict[str, float | None]] = {}
    with tempfile.TemporaryDirectory(prefix="tz-predict-") as tmp:
        root = Path(tmp)
        for name in names:
            built = _run(["--child", "compile", name, tier, str(root / "out")], root / "l3-cache")
            if "error" not in built:
                out[name] = {"compile_s": float(built["compile_s"]), "served_speedup": None}  # type: ignore[arg-type]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--from", dest="source", default="")
    parser.add_argument("--tier", default="fast")
    parser.add_argument("--blueprints", default="")
    ns = parser.parse_args()

    from tezzeret.blueprint import digest, library
    from tezzeret.blueprint.features import features
    from tezzeret.config import PaybackSettings
    from tezzeret.forge.payback import Example, predict_from
    from tezzeret.leyline import Strategy

    tier = Strategy.parse(ns.tier)
    lib = {b.name: b.ir for b in library()}
    names = [n for n in lib if not ns.blueprints or n in ns.blueprints.split(",")]
    measured = _measured_from(Path(ns.source), ns.tier) if ns.source else _measure(names, ns.tier)
    measured = {n: m for n, m in measured.items() if n in names}
    examples = {
        n: Example(digest(lib[n]), features(lib[n]), float(m["compile_s"]), m["served_speedup"], None)  # type: ignore[arg-type]
        for n, m in measured.items()
    }
    settings = PaybackSettings(min_history=2)
    rows = []
    for name, me in examples.items():
        others = [e for n, e in examples.items() if n != name]
        p = predict_from(others, me.features, tier, settings)
        baseline = statistics.median(e.compile_s for e in others)
        row = {
            "blueprint": name,
            "compile_s": round(me.compile_s, 2),
            "predicted_s": round(p.compile_s, 2),
            "error": round(abs(p.compile_s - me.compile_s) / me.compile_s, 3),
            "baseline_error": round(abs(baseline - me.compile_s) / me.compile_s, 3),
            "like": [n for n, e in examples.items() for nb in p.neighbours if e.digest == nb.digest],
        }
        if me.served_speedup is not None:
            row["served_speedup"] = round(me.served_speedup, 3)
            row["predicted_speedup"] = round(p.served_speedup, 3)
        rows.append(row)
    speed_errors = [abs(r["predicted_speedup"] - r["served_speedup"]) / r["served_speedup"] for r in rows if "served_speedup" in r]
    print(json.dumps({
        "bench": "predict",
        "tier": tier.value,
        "blueprints": len(rows),
        "neighbours": settings.neighbours,
        "median_abs_rel_error_compile_s": round(statistics.median(r["error"] for r in rows), 3) if rows else None,
        "baseline_median_of_others_error": round(statistics.median(r["baseline_error"] for r in rows), 3) if rows else None,
        "median_abs_rel_error_served_speedup": round(statistics.median(speed_errors), 3) if speed_errors else None,
        "source": ns.source or "measured",
        "rows": rows,
        "machine": machine(),
    }))


if __name__ == "__main__":
    main()
