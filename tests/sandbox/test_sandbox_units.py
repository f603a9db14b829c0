"""The sandbox's pure parts on real inputs: failure classes, result validation, argv, limits."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tezzeret.config import load_settings
from tezzeret.leyline import codec, pb
from tezzeret.sandbox import IsolationUnavailable, isolation, limits, outcome, results
from tezzeret.sandbox.errors import TaskSpecInvalid
from tezzeret.sandbox.pool import SandboxExecutor


@pytest.mark.parametrize(
    ("ending", "expected", "sig"),
    [
        (outcome.Ending(-signal.SIGSEGV), pb.OUTCOME_CRASH, "SIGSEGV"),
        (outcome.Ending(128 + signal.SIGSEGV, via_monitor=True), pb.OUTCOME_CRASH, "SIGSEGV"),
        (outcome.Ending(128 + signal.SIGSEGV, via_monitor=False), pb.OUTCOME_INTERNAL_ERROR, None),
        (outcome.Ending(-signal.SIGKILL, timed_out=True), pb.OUTCOME_TIMEOUT, "SIGKILL"),
        (outcome.Ending(-signal.SIGKILL), pb.OUTCOME_OUT_OF_MEMORY, "SIGKILL"),
        (outcome.Ending(-signal.SIGABRT, stderr_tail=["terminate called after throwing an instance of 'std::bad_alloc'"]),
         pb.OUTCOME_OUT_OF_MEMORY, "SIGABRT"),
        (outcome.Ending(-signal.SIGABRT), pb.OUTCOME_CRASH, "SIGABRT"),
        (outcome.Ending(128 + signal.SIGXCPU, via_monitor=True), pb.OUTCOME_TIMEOUT, "SIGXCPU"),
        (outcome.Ending(-signal.SIGXFSZ), pb.OUTCOME_SANDBOX_VIOLATION, "SIGXFSZ"),
        (outcome.Ending(1, stderr_tail=["Traceback", "ValueError: x"]), pb.OUTCOME_INTERNAL_ERROR, None),
    ],
)
def test_endings_map_to_one_outcome_with_evidence(ending: outcome.Ending, expected: int, sig: str | None) -> None:
    code, message, details = outcome.classify(ending)
    assert code == expected, message
    d = dict(details)
    assert d["exit_status"] == str(ending.returncode)
    assert d.get("signal") == sig
    if ending.stderr_tail:
        assert d["stderr_tail"].endswith(ending.stderr_tail[-1])


def test_task_exceptions_are_classified() -> None:
    from tezzeret.errors import TezzeretError

    assert outcome.classify_exception(MemoryError()) == (pb.OUTCOME_OUT_OF_MEMORY, "SANDBOX_OUT_OF_MEMORY")
    assert outcome.classify_exception(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried"))[0] == pb.OUTCOME_OUT_OF_MEMORY
    assert outcome.classify_exception(OSError(27, "File too large")) == (pb.OUTCOME_SANDBOX_VIOLATION, "SANDBOX_FILE_SIZE_LIMIT")
    assert outcome.classify_exception(TezzeretError("bad", code="BLUEPRINT_X")) == (pb.OUTCOME_REJECTED, "BLUEPRINT_X")
    assert outcome.classify_exception(ValueError("x"))[0] == pb.OUTCOME_INTERNAL_ERROR


def _job_dir(tmp_path: Path) -> Path:
    (tmp_path / "out").mkdir()
    return tmp_path


def test_result_validation_accepts_a_good_result(tmp_path: Path) -> None:
    job_dir = _job_dir(tmp_path)
    (job_dir / "out" / "a.bin").write_bytes(b"artifact")
    good = pb.WorkerResult(job_id="j", outcome=pb.OUTCOME_SUCCESS, artifact_path=str(job_dir / "out" / "a.bin"))
    (job_dir / "result.pb").write_bytes(codec.encode(good))
    assert results.read_result(job_dir, "j") == good
    exported = results.export_outputs(job_dir / "out", tmp_path / "dest", good.artifact_path, max_bytes=1 << 20)
    assert Path(exported.artifact_path).read_bytes() == b"artifact"


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda d: (d / "result.pb").write_bytes(b"\x12\x01j\x12\x01j\x18\x01"), "not canonical"),
        (lambda d: (d / "result.pb").write_bytes(codec.encode(pb.WorkerResult(job_id="j"))), "OUTCOME_UNSPECIFIED"),
        (lambda d: (d / "result.pb").write_bytes(codec.encode(pb.WorkerResult(job_id="j", outcome=pb.OUTCOME_FROM_CACHE))), "may not report"),
        (lambda d: (d / "result.pb").write_bytes(codec.encode(pb.WorkerResult(job_id="k", outcome=pb.OUTCOME_SUCCESS))), "is for job 'k'"),
        (lambda d: (d / "result.pb").write_bytes(codec.encode(
            pb.WorkerResult(job_id="j", outcome=pb.OUTCOME_SUCCESS, artifact_path=str(d / "out" / ".." / ".." / "x")))), "not a plain path"),
        (lambda d: os.symlink("/etc/passwd", d / "result.pb"), "cannot be opened safely"),
        (lambda d: os.mkfifo(d / "result.pb"), "not a regular file"),
    ],
)
def test_result_validation_refuses_untrustworthy_answers(tmp_path: Path, make, reason: str) -> None:
    job_dir = _job_dir(tmp_path)
    make(job_dir)
    with pytest.raises(results.ResultInvalid, match=reason):
        results.read_result(job_dir, "j")


def test_export_skips_links_and_refuses_a_linked_artifact(tmp_path: Path) -> None:
    job_dir = _job_dir(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    os.symlink(secret, job_dir / "out" / "artifact.bin")
    (job_dir / "out" / "sub").mkdir()
    (job_dir / "out" / "sub" / "ok.txt").write_text("ok")
    os.symlink(tmp_path, job_dir / "out" / "dirlink")
    with pytest.raises(results.ResultInvalid, match="missing or not a regular file"):
        results.export_outputs(job_dir / "out", tmp_path / "dest", str(job_dir / "out" / "artifact.bin"), max_bytes=1 << 20)
    exported = results.export_outputs(job_dir / "out", tmp_path / "dest2", "", max_bytes=1 << 20)
    assert sorted(exported.skipped) == ["artifact.bin", "dirlink"]
    assert (tmp_path / "dest2" / "sub" / "ok.txt").read_text() == "ok"
    assert not (tmp_path / "dest2" / "artifact.bin").exists()


def test_bwrap_argv_covers_secret_dirs_and_never_rebinds_tmp(tmp_path: Path) -> None:
    state = tmp_path / "state"
    keys = Path("/var/tmp") / f"tz-keys-{os.getpid()}"
    keys.mkdir(exist_ok=True)
    try:
        work = state / "sandbox" / "workers" / "w0"
        work.mkdir(parents=True)
        plan = isolation.SandboxPlan(
            writable=[work, state / "inductor"], hidden=[state, keys],
            readable=isolation.interpreter_paths(), drop_to_uid=61000,
        )
        argv = isolation.bwrap_argv(plan, ["python"])
        pairs = list(zip(argv, argv[1:]))
        assert ("--tmpfs", str(keys)) in pairs
        assert ("--bind", str(work)) in pairs and ("--ro-bind", "/") in pairs
        assert ("--ro-bind", "/tmp") not in pairs and ("--bind", "/tmp") not in pairs
        for flag in ("--unshare-net", "--unshare-pid", "--die-with-parent", "--new-session"):
            assert flag in argv
        assert ("--cap-drop", "ALL") in pairs
        assert argv[argv.index("--") + 1 :] == ["python"]
    finally:
        keys.rmdir()


def test_a_named_level_that_does_not_work_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(IsolationUnavailable, match="bwrap is not installed"):
        isolation.choose_level("bwrap")
    level, skipped = isolation.choose_level("auto")
    assert level == "subprocess" and len(skipped) == 2


def test_limits_follow_tier_and_job_overrides() -> None:
    s = load_settings()
    fast = limits.limits_for(pb.WorkerJob(strategy=pb.STRATEGY_FAST), s)
    assert (fast.memory_mb, fast.budget_s) == (4096, 65.0)
    # The backstop kill comes a little after the budget the task keeps itself; CPU time follows it.
    assert fast.timeout_s == 65.0 + 6.5 and fast.cpu_s == int(fast.timeout_s * 1.5 + 0.999)
    agg = limits.limits_for(pb.WorkerJob(strategy=pb.STRATEGY_AGGRESSIVE), s)
    assert agg.memory_mb == 16384 and agg.budget_s == 960.0 and agg.timeout_s > agg.budget_s
    own = limits.limits_for(pb.WorkerJob(strategy=pb.STRATEGY_FAST, memory_limit_mb=1000, timeout_ms=2000), s)
    assert (own.memory_mb, own.budget_s, own.timeout_s) == (1000, 2.0, 4.0)
    default = limits.limits_for(pb.WorkerJob(), s)
    assert default.memory_mb == 8192


def test_worker_env_carries_no_service_secrets() -> None:
    s = load_settings()
    env = limits.worker_env(s, {"PATH": "/usr/bin", "ESPER_LEYLINE_SECRET": "x", "TEZZERET_BUS__KEYS": "y",
                                "TORCHINDUCTOR_CPP_MARCH": "x86-64-v3"}, tmpdir="/t", user="u")
    assert "ESPER_LEYLINE_SECRET" not in env and "TEZZERET_BUS__KEYS" not in env
    assert env["TORCHINDUCTOR_CPP_MARCH"] == "x86-64-v3" and env["OMP_NUM_THREADS"] == "1"
    # Workers import the tezzeret this process runs, whatever PYTHONPATH the service had.
    import tezzeret

    assert Path(env["PYTHONPATH"], "tezzeret", "__init__.py").resolve() == Path(tezzeret.__file__).resolve()


def test_task_specs_are_checked() -> None:
    with pytest.raises(TaskSpecInvalid):
        SandboxExecutor(load_settings(), tasks={"x": "not a spec"})


def test_a_jobs_gpu_share_stays_under_max_gpu_memory_gb() -> None:
    from tezzeret.sandbox.worker import gpu_share

    h100 = 80 * 2**30
    assert gpu_share(0.25, 16, h100) == 0.2  # 16 GiB of 80 is less than a quarter
    assert gpu_share(0.15, 16, h100) == 0.15  # conservative mode's share is already smaller
    assert gpu_share(0.25, None, h100) == 0.25
    assert gpu_share(0.25, 16, 0) == 0.25  # no device size known: the fraction alone
