"""A training loop fed by a running forge: submit over HTTP, train at once, switch when ready.

The loop submits its blueprint to `tezzeret serve` and starts training immediately on the eager
module from a `KernelProvider`. The provider's fetch asks the forge for an artifact of that
blueprint (`GET /v1/artifacts?blueprint_id=`), downloads it, and verifies its Ed25519 signature with
the forge's public key (`GET /v1/keys/public`) before loading it in a background thread; the same
module, parameters and optimizer then run the compiled entries. The loop never waits.

Usage (with `tezzeret serve` running):
    python examples/train_against_forge.py [--url http://127.0.0.1:8787] [--blueprint residual_mlp_256]
        [--strategy FAST] [--steps 400]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import httpx
import torch

from tezzeret.blueprint import digest, example_inputs, example_training_step, library_blueprint
from tezzeret.leyline import to_json
from tezzeret.loader import KernelProvider


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:8787")
    parser.add_argument("--blueprint", default="residual_mlp_256")
    parser.add_argument("--strategy", default="FAST")
    parser.add_argument("--steps", type=int, default=400)
    ns = parser.parse_args()

    # Compiled entries are guarded on torch's thread count; the forge's workers use
    # `sandbox.worker_threads` (1 by default), so the loop matches it.
    torch.set_num_threads(1)
    ir = library_blueprint(ns.blueprint)
    key = digest(ir)
    client = httpx.Client(base_url=ns.url, timeout=30)
    sub = client.post(
        "/v1/blueprints", content=to_json(ir), headers={"Content-Type": "application/json"},
        params={"strategy": ns.strategy},
    ).json()
    print(f"submitted {ns.blueprint}: job {sub.get('job_id')} {sub.get('status')} → {sub.get('artifact_id')}")
    public_key = bytes.fromhex(client.get("/v1/keys/public").json()["public_key_hex"])
    downloads = Path(tempfile.mkdtemp(prefix="tz-forge-example-"))

    def fetch(blueprint_digest: str) -> Path | None:
        # Runs on the provider's background thread, never on the training loop.
        with httpx.Client(base_url=ns.url, timeout=30) as c:
            listed = c.get("/v1/artifacts", params={"blueprint_id": blueprint_digest}).json()["artifacts"]
            wanted = [a for a in listed if a["artifact_id"] == sub.get("artifact_id")] or listed
            if not wanted:
                return None
            artifact_id = wanted[-1]["artifact_id"]
            path = downloads / f"{artifact_id}.tzk"
            path.write_bytes(c.get(f"/v1/artifacts/{artifact_id}/download").content)
            return path

    with KernelProvider(fetch, public_key=public_key) as provider:
        module = provider.get(ir)
        assert module is not None
        opt = torch.optim.SGD(module.parameters(), lr=0.01)
        inputs = example_inputs(ir)
        started = time.perf_counter()
        mode = ""
        for step in range(ns.steps):
            provider.get(ir)  # cheap; lets the provider ask the forge again now and then
            t = time.perf_counter()
            loss = example_training_step(module, opt, inputs)
            state = provider.state(key)
            if state.mode != mode or step % 100 == 0:
                mode = state.mode
                print(
                    f"step {step:4d}  t={time.perf_counter() - started:6.2f}s  step_ms={1000 * (time.perf_counter() - t):6.2f}"
                    f"  loss={loss.item():.5f}  provider={state.mode} {state.reason}"
                )
            time.sleep(0.02)  # the rest of a real training step
        print(f"calls: compiled={module.calls_compiled} eager={module.calls_eager}")


if __name__ == "__main__":
    main()
