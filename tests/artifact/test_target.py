"""The target model and the loader's preflight, on crafted manifests and hosts: compatible,
compatible but not optimal, or incompatible, always with reasons, before any payload is read."""

from __future__ import annotations

import pytest

from tezzeret.artifact import target
from tezzeret.artifact.codeversion import blueprint_code_version, compile_code_version
from tezzeret.artifact.payload import KNOWN_FORMATS
from tezzeret.artifact.target import Gpu, Host, parse_target, preflight, target_string
from tezzeret.leyline import pb

AVX2 = frozenset({"sse4_2", "avx2", "fma", "bmi2"})
AVX512 = AVX2 | {"avx512f", "avx512bw", "avx512vl"}


def _host(flags: frozenset[str] = AVX2, *, torch: str = "2.13.0+cpu", cuda: str | None = None,
          gpus: tuple[Gpu, ...] = ()) -> Host:
    return Host("x86_64", flags, torch, "3.11.7", cuda, gpus)


def _manifest(spec: pb.TargetSpec, **fields: object) -> pb.CompiledKernelArtifact:
    versions = {"compile_code_version": compile_code_version(), "blueprint_code_version": blueprint_code_version()}
    m = pb.CompiledKernelArtifact(
        artifact_id="a" * 16 + "-" + target_string(spec) + "-fast-00000000", target=target_string(spec),
        torch_version=spec.torch_build, python_version="3.11.7", **{**versions, **fields},
    )
    m.target_spec.CopyFrom(spec)
    m.payloads.add(name="entry/b8-train", format=KNOWN_FORMATS[0])
    return m


def _cpu(isa: str = "avx2", torch: str = "2.13.0+cpu") -> pb.TargetSpec:
    return pb.TargetSpec(device="cpu", arch="x86_64", isa=isa, torch_build=torch)


def _cuda(cc: str = "9.0", cuda: str = "13.0", torch: str = "2.13.0+cu130") -> pb.TargetSpec:
    return pb.TargetSpec(device="cuda", arch="x86_64", compute_capability=cc, cuda_version=cuda, torch_build=torch)


def test_target_strings_round_trip() -> None:
    assert target_string(_cpu()) == "cpu-x86_64-avx2"
    assert target_string(_cuda()) == "cuda-sm90-cu130"
    assert target_string(parse_target("cuda-sm90-cu130")) == "cuda-sm90-cu130"
    assert parse_target("cuda-sm80").compute_capability == "8.0"
    with pytest.raises(ValueError, match="cpu-<arch>-<isa>"):
        parse_target("tpu-v5")


def test_cpu_verdicts() -> None:
    assert preflight(_manifest(_cpu()), _host()).verdict == "compatible"
    # An AVX2 build on an AVX-512 host runs, but a build for the host would be faster.
    better = preflight(_manifest(_cpu()), _host(AVX512))
    assert better.verdict == "not_optimal" and "avx512" in better.reasons[0]
    old_cpu = preflight(_manifest(_cpu("avx512")), _host(AVX2))
    assert old_cpu.verdict == "incompatible" and "lacks avx512f" in old_cpu.reasons[0]
    other_torch = preflight(_manifest(_cpu(torch="2.12.0+cpu")), _host())
    assert other_torch.verdict == "incompatible" and "torch 2.12.0+cpu" in other_torch.reasons[0]


def test_cuda_verdicts() -> None:
    h100 = _host(torch="2.13.0+cu130", cuda="13.0", gpus=(Gpu(0, "NVIDIA H100", "9.0"),))
    ok = preflight(_manifest(_cuda()), h100)
    assert ok.verdict == "compatible" and ok.device_index == 0
    a100 = _host(torch="2.13.0+cu130", cuda="13.0", gpus=(Gpu(0, "NVIDIA A100", "8.0"),))
    other_cc = preflight(_manifest(_cuda()), a100)
    assert other_cc.verdict == "incompatible" and "compute capability 9.0" in other_cc.reasons[0]
    older_cuda = _host(torch="2.13.0+cu126", cuda="12.6", gpus=(Gpu(0, "NVIDIA H100", "9.0"),))
    newer = preflight(_manifest(_cuda()), older_cuda)
    assert newer.verdict == "incompatible" and any("newer than this torch's CUDA 12.6" in r for r in newer.reasons)
    cpu_only = preflight(_manifest(_cuda()), _host())
    assert cpu_only.verdict == "incompatible" and any("no CUDA" in r for r in cpu_only.reasons)


def test_code_versions_and_formats() -> None:
    builder = preflight(_manifest(_cpu(), blueprint_code_version="0" * 64), _host())
    assert builder.verdict == "incompatible" and "blueprint builder code" in builder.reasons[0]
    compiler = preflight(_manifest(_cpu(), compile_code_version="0" * 64), _host())
    assert compiler.verdict == "not_optimal" and "compile code" in compiler.reasons[0]
    m = _manifest(_cpu())
    m.payloads[0].format = "torch-pickle/any"
    assert preflight(m, _host()).verdict == "incompatible"


def test_the_signed_target_string_decides_over_the_spec() -> None:
    m = _manifest(_cpu())
    m.target = "cpu-aarch64-avx2"  # the id's target disagrees with the spec: the id wins
    assert preflight(m, _host()).verdict == "incompatible"


def test_this_host() -> None:
    here = Host.current()
    assert here.arch == target.machine() and here.python_version == target.python_version()


# ---- CUDA hosts and the supported torch range -----------------------------------------------


def test_a_host_outside_the_supported_torch_range_is_refused_naming_the_range(monkeypatch: pytest.MonkeyPatch) -> None:
    from tezzeret.artifact import payload

    monkeypatch.delenv(payload.UNTESTED_TORCH_ENV, raising=False)
    spec = _cpu(torch="2.12.0+cpu")
    verdict = preflight(_manifest(spec), _host(torch="2.12.0+cpu"))
    assert verdict.verdict == "incompatible"
    assert "outside the range" in verdict.reasons[0] and "torch 2.13" in verdict.reasons[0]
    with pytest.raises(payload.UnsupportedTorch) as err:
        payload.require_supported_torch("2.11.0+cu130")
    assert err.value.code == "TORCH_UNSUPPORTED" and payload.UNTESTED_TORCH_ENV in str(err.value)
    payload.require_supported_torch("2.13.0+cpu")  # the claimed range passes


def test_an_untested_torch_runs_only_when_opted_into(monkeypatch: pytest.MonkeyPatch) -> None:
    from tezzeret.artifact import payload

    monkeypatch.setenv(payload.UNTESTED_TORCH_ENV, "2.11")
    payload.require_supported_torch("2.11.0+cu130")
    assert payload.format_for("2.11.0+cu130") in payload.known_formats()
    assert payload.format_for("2.11.0+cu130") not in payload.KNOWN_FORMATS
    spec = _cuda(torch="2.11.0+cu130")
    m = _manifest(spec)
    m.payloads[0].format = payload.format_for("2.11.0+cu130")
    h100 = Host("x86_64", AVX2, "2.11.0+cu130", "3.11.7", "13.0", (Gpu(0, "NVIDIA H100", "9.0"),))
    assert preflight(m, h100).verdict == "compatible"
    monkeypatch.delenv(payload.UNTESTED_TORCH_ENV)
    assert preflight(m, h100).verdict == "incompatible"


def test_this_torch_has_every_private_name_the_precompile_layer_uses() -> None:
    from tezzeret.artifact import payload

    assert payload.missing_private_api() == []


def test_cuda_version_of_a_torch_build_is_read_without_importing_torch() -> None:
    assert target.cuda_in_version_file("cuda: Optional[str] = '13.0'\nhip = None\n") == "13.0"
    assert target.cuda_in_version_file("cuda = '12.6'\n") == "12.6"
    assert target.cuda_in_version_file("cuda: Optional[str] = None\n") is None


def _nvml(name: str = "NVIDIA H100 80GB HBM3", cc: tuple[int, int] = (9, 0), count: int = 1) -> object:
    """An NVML stand-in with the call surface `nvml_device` uses (the device facts a driver
    would report), for hosts this machine is not."""
    import types

    def handle(i: int) -> int:
        if i >= count:
            raise RuntimeError("NVML_ERROR_INVALID_ARGUMENT")
        return i

    return types.SimpleNamespace(
        nvmlInit=lambda: None, nvmlShutdown=lambda: None, nvmlDeviceGetHandleByIndex=handle,
        nvmlDeviceGetCudaComputeCapability=lambda h: cc, nvmlDeviceGetName=lambda h: name.encode(),
        nvmlSystemGetDriverVersion=lambda: "580.159.04",
    )


def test_the_forge_describes_a_cuda_target_from_nvml_and_the_torch_build(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    # The forge's process: torch installed (a CUDA build) but never imported.
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setattr(target, "torch_cuda_version", lambda: "13.0")
    spec = target.cuda_host_spec(0, nvml=_nvml())
    assert target_string(spec) == "cuda-sm90-cu130"
    assert (spec.device_name, spec.driver_version, spec.compute_capability) == ("NVIDIA H100 80GB HBM3", "580.159.04", "9.0")
    with pytest.raises(target.TargetUnavailable, match="NVML reads no GPU 1"):
        target.cuda_host_spec(1, nvml=_nvml())
    monkeypatch.setattr(target, "torch_cuda_version", lambda: None)
    with pytest.raises(target.TargetUnavailable, match="CPU build"):
        target.cuda_host_spec(0, nvml=_nvml())


def test_cuda_targets_change_ids_and_toolchains_cpu_ones_do_not() -> None:
    from tezzeret.compile import identity
    from tezzeret.compile.tiers import FAST

    cpu = identity.toolchain_for_tier(FAST, identity.host_target())
    assert "device_options" not in cpu.tier_settings
    h100 = _cuda(torch=target.torch_build())
    cuda = identity.toolchain_for_tier(FAST, h100)
    assert cuda.target == "cuda-sm90-cu130" and "embed_kernel_binary" in cuda.tier_settings
    assert cuda.hash() != cpu.hash()
    assert identity.artifact_id("ab" * 32, FAST, h100).split("-")[1:4] == ["cuda", "sm90", "cu130"]
    a100 = _cuda(cc="8.0", torch=target.torch_build())
    assert identity.artifact_id("ab" * 32, FAST, a100) != identity.artifact_id("ab" * 32, FAST, h100)
    # The CPU host of this machine cannot describe a CUDA target.
    with pytest.raises(target.TargetUnavailable):
        identity.host_target("cuda")
