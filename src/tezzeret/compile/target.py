"""The compile target and toolchain identity: what an artifact was built for and with.

Owns: the target string (`cpu-x86_64-avx2`), the pinned CPU ISA and the environment that pins it,
the Python/torch version strings, the version of Tezzeret's own compile code, and the toolchain
hash that goes into every artifact id. Must never compile anything or import private torch APIs
(those live in `precompile.py`); it reads versions only.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

# Bumped whenever the compile code changes what it writes into a payload or how it verifies; part
# of the toolchain hash, so old artifacts are never mistaken for new ones.
COMPILE_CODE_VERSION = "3"

# The ISA every CPU artifact is built for instead of -march=native (notes: an artifact built with
# the producer's native ISA can crash on an older consumer CPU).
CPU_MARCH = "x86-64-v3"
_MARCH_TO_ISA = {"x86-64-v3": "avx2", "x86-64-v4": "avx512", "x86-64-v2": "sse42"}
# cpuinfo flags a host must have to run code built for each ISA level.
_ISA_FLAGS = {
    "avx2": ("avx2", "fma", "bmi2"),
    "avx512": ("avx512f", "avx512bw", "avx512vl"),
    "sse42": ("sse4_2",),
}


def pinned_env() -> dict[str, str]:
    """Environment that pins the CPU ISA; set it before torch is imported in a compile worker."""
    return {"TORCHINDUCTOR_CPP_MARCH": CPU_MARCH, "ATEN_CPU_CAPABILITY": "avx2"}


def python_version() -> str:
    """The exact interpreter version: torch's precompile refuses 3.11.7 code on 3.11.2."""
    return platform.python_version()


def torch_version() -> str:
    """torch's version without importing torch (the forge computes artifact ids without it)."""
    import sys
    from importlib.metadata import version

    torch = sys.modules.get("torch")
    return str(torch.__version__) if torch is not None else version("torch")


def isa_level(march: str = CPU_MARCH) -> str:
    return _MARCH_TO_ISA.get(march, march)


def machine() -> str:
    return platform.machine() or "unknown"


def target_for(device: str = "cpu") -> str:
    """Device class with ISA, e.g. `cpu-x86_64-avx2` (CUDA would be `cuda-sm90`)."""
    if device != "cpu":
        raise ValueError(f"device {device!r}: only CPU targets are built by this compiler")
    return f"cpu-{machine()}-{isa_level()}"


@cache
def _cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def host_supports(target: str) -> tuple[bool, str]:
    """Whether this host can run code built for `target`, and why not when it cannot."""
    parts = target.split("-")
    if len(parts) != 3 or parts[0] != "cpu":
        return False, f"target {target!r} is not a CPU target this loader knows"
    _, arch, isa = parts
    if arch != machine():
        return False, f"target architecture {arch} differs from this host's {machine()}"
    flags = _cpu_flags()
    if not flags:
        # No /proc/cpuinfo (not Linux): trust the architecture match.
        return True, ""
    missing = [flag for flag in _ISA_FLAGS.get(isa, (isa,)) if flag not in flags]
    if missing:
        return False, f"this CPU lacks {', '.join(missing)} needed by ISA level {isa}"
    return True, ""


@dataclass(frozen=True)
class Toolchain:
    torch_version: str
    python_version: str
    target: str
    tier_name: str
    tier_version: str
    tier_settings: str
    compile_code_version: str = COMPILE_CODE_VERSION

    def hash(self) -> str:
        doc = json.dumps(self.__dict__, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(doc.encode()).hexdigest()


def toolchain_for(tier_name: str, tier_version: str, tier_settings: Mapping[str, object]) -> Toolchain:
    return Toolchain(
        torch_version=torch_version(),
        python_version=python_version(),
        target=target_for("cpu"),
        tier_name=tier_name,
        tier_version=tier_version,
        tier_settings=json.dumps(dict(tier_settings), sort_keys=True, separators=(",", ":")),
    )


def ensure_pinned_isa() -> None:
    """Pin the ISA in this process when the caller did not (setdefault: an explicit choice wins)."""
    for key, value in pinned_env().items():
        os.environ.setdefault(key, value)
