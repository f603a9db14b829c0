"""What an artifact is built for, what a host offers, and whether the two fit (the preflight).

Owns: the target model (`TargetSpec` in the manifest; the short target string in artifact ids:
`cpu-x86_64-avx2`, `cuda-sm90-cu130`), the pinned CPU ISA and the environment that pins it, a
description of this host (`Host`), and `preflight`, which answers *compatible*, *not optimal* or
*incompatible* with reasons before a single payload byte is read. Must never import torch (it reads
what a caller already imported: a loader has torch loaded, the forge does not) and never compile.

Rules, and why:
- torch build and Python version must match exactly: torch's precompiled entries refuse anything
  else, and a refusal at preflight names the fix instead of failing inside torch.
- CPU: same architecture, and every CPU flag of the artifact's ISA level present (code built for
  AVX2 crashes on a CPU without it). A host that could run a higher level is *not optimal*.
- CUDA: the same compute capability (Triton and AOTI emit cubins for one architecture) and a CUDA
  runtime at least as new as the one the kernels were built with. The driver version is recorded,
  not compared: it only has to support that CUDA, and torch's own check says so precisely.
- the host's torch must be one the precompile layer supports (`payload.SUPPORTED_TORCH`).
- the blueprint builder's code must match (the consumer rebuilds the module from the IR; different
  builder code could make a module the compiled entries do not fit); other compile code differing
  is *not optimal* (the artifact is valid, a rebuild may be better).
"""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import sys
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

from tezzeret.artifact.codeversion import blueprint_code_version, compile_code_version
from tezzeret.artifact.errors import TargetUnavailable
from tezzeret.artifact.payload import known_formats, unsupported_torch_reason
from tezzeret.leyline import pb

# The ISA every CPU artifact is built for instead of -march=native (notes: an artifact built with
# the producer's native ISA can crash on an older consumer CPU).
CPU_MARCH = "x86-64-v3"
# ISA levels in increasing order, with the -march that builds them and the flags a host needs.
ISA_LEVELS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("sse42", "x86-64-v2", ("sse4_2",)),
    ("avx2", "x86-64-v3", ("avx2", "fma", "bmi2")),
    ("avx512", "x86-64-v4", ("avx512f", "avx512bw", "avx512vl")),
)
_ATEN_CAPABILITY = {"sse42": "default", "avx2": "avx2", "avx512": "avx512"}

Verdict = Literal["compatible", "not_optimal", "incompatible"]


def isa_level(march: str = CPU_MARCH) -> str:
    return next((isa for isa, m, _ in ISA_LEVELS if m == march), march)


def pinned_env() -> dict[str, str]:
    """Environment that pins the CPU ISA; set it before torch is imported in a compile worker."""
    return {"TORCHINDUCTOR_CPP_MARCH": CPU_MARCH, "ATEN_CPU_CAPABILITY": _ATEN_CAPABILITY[isa_level()]}


def ensure_pinned_isa() -> None:
    """Pin the ISA in this process when the caller did not (setdefault: an explicit choice wins)."""
    for key, value in pinned_env().items():
        os.environ.setdefault(key, value)


def python_version() -> str:
    """The exact interpreter version: torch's precompile refuses 3.11.7 code on 3.11.2."""
    return platform.python_version()


def torch_build() -> str:
    """torch's full version (`2.13.0+cpu`) without importing torch (the forge never loads it)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return str(torch.__version__)
    return _installed_torch()


@cache
def _installed_torch() -> str:
    # Reading the distribution's metadata costs milliseconds; every artifact id needs it.
    try:
        return version("torch")
    except PackageNotFoundError:
        return "none"


def torch_version() -> str:
    """The release part of the torch build, `2.13.0`: what manifests compare."""
    return torch_build().split("+", 1)[0]


def machine() -> str:
    return platform.machine() or "unknown"


@cache
def cpu_model() -> str:
    """The CPU's model name (`/proc/cpuinfo`), else what `platform` says, else "unknown"."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


@cache
def cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def best_isa(flags: frozenset[str]) -> str | None:
    """The highest ISA level whose flags are all present (None without flags or off x86)."""
    best = None
    for isa, _, needs in ISA_LEVELS:
        if all(f in flags for f in needs):
            best = isa
    return best


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    compute_capability: str  # "9.0"


@dataclass(frozen=True)
class Host:
    """What this process can run: read once, compared with every manifest."""

    arch: str
    cpu_flags: frozenset[str]
    torch_build: str
    python_version: str
    cuda_version: str | None = None  # torch's CUDA runtime, None for a CPU build
    gpus: tuple[Gpu, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def current(cls) -> Host:
        """This host; CUDA devices only when torch is already imported (the loader's case)."""
        cuda_version: str | None = None
        gpus: list[Gpu] = []
        torch = sys.modules.get("torch")
        if torch is not None:
            cuda_version = getattr(torch.version, "cuda", None)
            try:
                if cuda_version and torch.cuda.is_available():
                    for i in range(torch.cuda.device_count()):
                        major, minor = torch.cuda.get_device_capability(i)
                        gpus.append(Gpu(i, torch.cuda.get_device_name(i), f"{major}.{minor}"))
            except Exception:  # noqa: BLE001 - a broken CUDA setup means: no usable GPU here
                gpus = []
        return cls(machine(), cpu_flags(), torch_build(), python_version(), cuda_version, tuple(gpus))


def torch_cuda_version() -> str | None:
    """The CUDA version torch was built with (`13.0`), None for a CPU build. Read from torch when
    it is imported, else from its `version.py` without importing it (the forge never loads torch)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return getattr(torch.version, "cuda", None)
    try:
        found = importlib.util.find_spec("torch")
        if found is None or not found.submodule_search_locations:
            return None
        text = (Path(next(iter(found.submodule_search_locations))) / "version.py").read_text()
    except (OSError, ValueError, ImportError):
        return None
    return cuda_in_version_file(text)


def cuda_in_version_file(text: str) -> str | None:
    """The `cuda = '13.0'` of a torch `version.py` (None for `cuda: Optional[str] = None`)."""
    match = re.search(r"^cuda\s*(?::[^=]*)?=\s*['\"]([0-9.]+)['\"]", text, re.MULTILINE)
    return match.group(1) if match else None


def _text(value: str | bytes) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def nvml_device(index: int, nvml: Any = None) -> tuple[str, str, str] | None:
    """(name, compute capability `9.0`, driver version) of NVML device `index` (NVML numbers
    devices in PCI bus order, whatever CUDA_VISIBLE_DEVICES says); None without NVML or device.
    `nvml` is the `pynvml` module or anything with its call surface."""
    try:
        if nvml is None:
            import pynvml

            nvml = pynvml
        nvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no library, no driver: no device
        return None
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
        return _text(nvml.nvmlDeviceGetName(handle)), f"{major}.{minor}", _text(nvml.nvmlSystemGetDriverVersion())
    except Exception:  # noqa: BLE001 - an index past the last device, a lost GPU
        return None
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001 - shutting down a half-initialised NVML is best effort
            pass


def cuda_host_spec(index: int = 0, *, nvml: Any = None) -> pb.TargetSpec:
    """The CUDA target of this host's device `index`: compute capability, torch's CUDA version, the
    driver version (from NVML when it can be read) and the device's name.

    With torch imported and CUDA available the device is torch's `cuda:<index>` (the numbering
    CUDA_VISIBLE_DEVICES leaves); otherwise NVML's device `index` and torch's CUDA version read
    without importing torch, which is how the forge names CUDA artifacts. Raises
    `TargetUnavailable` saying why there is no such target here."""
    cuda_version = torch_cuda_version()
    if not cuda_version:
        raise TargetUnavailable(
            f"a CUDA target was asked for, and this torch ({torch_build()}) is a CPU build: install a "
            "CUDA build of torch on the compile host, or ask for a CPU target"
        )
    torch = sys.modules.get("torch")
    if torch is not None:
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise TargetUnavailable(
                f"a CUDA target was asked for, and torch sees {torch.cuda.device_count()} CUDA device(s) "
                f"(no cuda:{index}; CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')!r})"
            )
        major, minor = torch.cuda.get_device_capability(index)
        # The driver is the host's, whichever device: NVML's first one answers for all.
        described = nvml_device(0, nvml)
        driver = described[2] if described else ""
        return cuda_spec(f"{major}.{minor}", cuda_version, driver_version=driver,
                         device_name=str(torch.cuda.get_device_name(index)))
    described = nvml_device(index, nvml)
    if described is None:
        raise TargetUnavailable(
            f"a CUDA target was asked for, and NVML reads no GPU {index} on this host (no driver, or "
            "fewer devices): set resources.gpu_device to a device nvidia-smi lists"
        )
    name, capability, driver = described
    return cuda_spec(capability, cuda_version, driver_version=driver, device_name=name)


def cpu_spec(isa: str | None = None) -> pb.TargetSpec:
    """The spec of a CPU build on this host at the pinned (or given) ISA level."""
    return pb.TargetSpec(device="cpu", arch=machine(), isa=isa or isa_level(), torch_build=torch_build())


def cuda_spec(compute_capability: str, cuda_version: str, *, driver_version: str = "", device_name: str = "") -> pb.TargetSpec:
    return pb.TargetSpec(
        device="cuda", arch=machine(), compute_capability=compute_capability, cuda_version=cuda_version,
        driver_version=driver_version, device_name=device_name, torch_build=torch_build(),
    )


def target_string(spec: pb.TargetSpec) -> str:
    """The short form in artifact ids and cache keys: `cpu-x86_64-avx2`, `cuda-sm90-cu130`."""
    if spec.device == "cuda":
        sm = spec.compute_capability.replace(".", "")
        cu = spec.cuda_version.replace(".", "")
        return f"cuda-sm{sm}-cu{cu}"
    return f"cpu-{spec.arch}-{spec.isa}"


def parse_target(text: str) -> pb.TargetSpec:
    """The inverse of `target_string` (for requests naming a target); raises ValueError."""
    parts = text.strip().split("-")
    if len(parts) == 3 and parts[0] == "cpu" and parts[2] in [i for i, _, _ in ISA_LEVELS]:
        return pb.TargetSpec(device="cpu", arch=parts[1], isa=parts[2])
    if len(parts) in (2, 3) and parts[0] == "cuda" and parts[1].startswith("sm") and parts[1][2:].isdigit():
        sm = parts[1][2:]
        spec = pb.TargetSpec(device="cuda", compute_capability=f"{sm[:-1]}.{sm[-1]}")
        if len(parts) == 3 and parts[2].startswith("cu") and parts[2][2:].isdigit():
            cu = parts[2][2:]
            spec.cuda_version = f"{cu[:-1]}.{cu[-1]}"
        return spec
    raise ValueError(
        f"target {text!r} is not a target name: use cpu-<arch>-<isa> (e.g. cpu-x86_64-avx2) or "
        "cuda-sm<NN>[-cu<NNN>] (e.g. cuda-sm90-cu130)"
    )


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p.isdigit())


@dataclass(frozen=True)
class Preflight:
    verdict: Verdict
    reasons: tuple[str, ...] = ()
    # The CUDA device index the artifact's kernels fit, for CUDA targets.
    device_index: int | None = None

    @property
    def loadable(self) -> bool:
        return self.verdict != "incompatible"


def manifest_spec(manifest: pb.CompiledKernelArtifact) -> pb.TargetSpec:
    """What the manifest says it was built for. The target string (in the id, signed) decides;
    the spec adds what the string cannot carry (torch build, CUDA details) when the two agree.
    Raises ValueError for a target string this code does not know."""
    spec = parse_target(manifest.target) if manifest.target else pb.TargetSpec(device="cpu")
    if manifest.HasField("target_spec") and target_string(manifest.target_spec) == target_string(spec):
        spec = pb.TargetSpec()
        spec.CopyFrom(manifest.target_spec)
    if not spec.torch_build:
        spec.torch_build = manifest.torch_version
    return spec


def preflight(manifest: pb.CompiledKernelArtifact, host: Host | None = None) -> Preflight:
    """Whether `host` (default: this process) can load `manifest`'s entries, and why not."""
    host = host or Host.current()
    try:
        spec = manifest_spec(manifest)
    except ValueError as exc:
        return Preflight("incompatible", (str(exc),))
    bad: list[str] = []
    meh: list[str] = []
    unsupported = unsupported_torch_reason(host.torch_build)
    if unsupported:
        bad.append(unsupported)
    release = host.torch_build.split("+", 1)[0]
    for built in dict.fromkeys(filter(None, (manifest.torch_version, spec.torch_build))):
        if built.split("+", 1)[0] != release or ("+" in built and "+" in host.torch_build and built != host.torch_build):
            bad.append(f"built with torch {built}, this process has {host.torch_build}")
            break
    if manifest.python_version != host.python_version:
        bad.append(f"built with Python {manifest.python_version}, this process runs {host.python_version}")
    device_index: int | None = None
    if spec.device == "cuda":
        matching = [g for g in host.gpus if g.compute_capability == spec.compute_capability]
        if not host.cuda_version:
            bad.append("built for CUDA, and this torch build has no CUDA")
        elif not host.gpus:
            bad.append("built for CUDA, and no CUDA device is visible (CUDA_VISIBLE_DEVICES?)")
        elif not matching:
            have = ", ".join(f"{g.name} sm{g.compute_capability}" for g in host.gpus)
            bad.append(f"built for compute capability {spec.compute_capability}; this host has {have}")
        else:
            device_index = matching[0].index
        if host.cuda_version and spec.cuda_version and _version_tuple(spec.cuda_version) > _version_tuple(host.cuda_version):
            bad.append(f"built with CUDA {spec.cuda_version}, newer than this torch's CUDA {host.cuda_version}")
    elif spec.device == "cpu":
        if spec.arch and spec.arch != host.arch:
            bad.append(f"built for {spec.arch}, this host is {host.arch}")
        elif host.cpu_flags:
            needs = next((n for isa, _, n in ISA_LEVELS if isa == spec.isa), None)
            missing = [f for f in (needs or ()) if f not in host.cpu_flags]
            if needs is None:
                bad.append(f"ISA level {spec.isa!r} is unknown to this loader")
            elif missing:
                bad.append(f"this CPU lacks {', '.join(missing)} needed by ISA level {spec.isa}")
            else:
                best = best_isa(host.cpu_flags)
                order = [i for i, _, _ in ISA_LEVELS]
                if best is not None and order.index(best) > order.index(spec.isa):
                    meh.append(f"built for {spec.isa}; this CPU runs {best}, which a rebuild for it could use")
    else:
        bad.append(f"device class {spec.device!r} is unknown to this loader")
    formats = known_formats()
    for ref in manifest.payloads:
        if ref.name.startswith("entry/") and ref.format not in formats:
            bad.append(f"payload {ref.name!r} has format {ref.format!r}, this loader reads {', '.join(formats)}")
    if manifest.blueprint_code_version and manifest.blueprint_code_version != blueprint_code_version():
        bad.append(
            f"built with blueprint builder code {manifest.blueprint_code_version[:12]}, this process has "
            f"{blueprint_code_version()[:12]} (install the forge's Tezzeret version, or recompile)"
        )
    elif manifest.compile_code_version and manifest.compile_code_version != compile_code_version():
        meh.append(f"built by compile code {manifest.compile_code_version[:12]}, this process has {compile_code_version()[:12]}")
    if bad:
        return Preflight("incompatible", tuple(bad))
    return Preflight("not_optimal" if meh else "compatible", tuple(meh), device_index)
