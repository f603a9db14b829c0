"""`tezzeret doctor [--json]`: checks a host before the forge starts on it, and says what to fix.

Owns: the host checks (torch and ISA against the artifacts already in the store, bubblewrap and
user namespaces, cgroups for the CPU cap, the state dir's space, file system and fsync cost, Redis
and Ray when configured, the clock, the key directory's permissions), each answering ok, warn or
error with a message and a fix, and the exit code by the worst of them (0 ok, 1 warn, 2 error).
Must never change the host or start the service: it writes only its own probe file and probe
cgroup and removes both, and reads the store through a read-only SQLite connection.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sqlite3
import stat
import statistics
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Optional
from urllib.parse import urlparse

import typer

from tezzeret.config import Settings
from tezzeret.errors import TezzeretError

Status = Literal["ok", "warn", "error"]
SEVERITY: dict[str, int] = {"ok": 0, "warn": 1, "error": 2}

# The disk alert (ops/prometheus/alerts.yml) fires under 5 GiB; under 512 MiB a burst of FAST
# artifacts (3-4 MB each) plus a WAL segment can fill it before anyone reacts.
DISK_WARN_BYTES = 5 * 1024**3
DISK_ERROR_BYTES = 512 * 1024**2
# A WAL commit is two syncs; at 20 ms each a commit takes 40 ms and the forge crawls.
FSYNC_WARN_MS = 20.0
FSYNC_SAMPLES = 10
# Any wall clock before this is a host that booted without a clock source.
EARLIEST_SANE_WALL = 1_704_067_200  # 2024-01-01T00:00:00Z


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    message: str
    fix: str = ""


def ok(name: str, message: str) -> Check:
    return Check(name, "ok", message)


def warn(name: str, message: str, fix: str) -> Check:
    return Check(name, "warn", message, fix)


def error(name: str, message: str, fix: str) -> Check:
    return Check(name, "error", message, fix)


def exit_code(checks: list[Check]) -> int:
    return max((SEVERITY[c.status] for c in checks), default=0)


def _existing(path: Path) -> Path:
    """`path`, or its nearest ancestor that exists (where a directory the forge makes will live)."""
    path = path.expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


# ---------------------------------------------------------------- torch, ISA, artifacts


def store_manifests(store_dir: Path) -> tuple[list[Any], str | None]:
    """Every artifact manifest in the store (read-only), and why none could be read, if so."""
    from tezzeret.leyline import codec, pb
    from tezzeret.store.db import DB_FILENAME

    db = store_dir / DB_FILENAME
    if not db.exists():
        return [], None
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            rows = conn.execute("SELECT artifact_id, manifest FROM artifacts").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return [], f"cannot read {db}: {exc}"
    manifests: list[pb.CompiledKernelArtifact | None] = []
    for _, blob in rows:
        try:
            manifests.append(codec.decode(pb.CompiledKernelArtifact, bytes(blob)))
        except Exception:  # noqa: BLE001 - a manifest the codec refuses is reported by the artifacts check
            manifests.append(None)
    return manifests, None


def check_torch(settings: Settings, manifests: list[Any]) -> Check:
    from tezzeret.artifact.target import torch_build

    have = torch_build()
    if have == "none":
        return error("torch", "torch is not installed in this environment",
                     "pip install torch==2.13.0 (the CPU build; the version Tezzeret is pinned to)")
    release = have.split("+", 1)[0]
    spec = _torch_requirement()
    if spec is not None and not spec.contains(release, prereleases=True):
        return error("torch", f"torch {have} does not satisfy Tezzeret's requirement torch{spec}",
                     "pip install torch==2.13.0")
    built = Counter(m.torch_version for m in manifests if m is not None and m.torch_version)
    other = {v: n for v, n in built.items() if v.split("+", 1)[0] != release}
    if other:
        names = ", ".join(f"{n} with torch {v}" for v, n in sorted(other.items()))
        return error("torch", f"this host has torch {have}, and the store holds artifacts built {names}: "
                     "no loader with this torch accepts them",
                     f"install the torch they were built with (pip install torch=={max(other, key=lambda v: other[v])}), "
                     "or rebuild them here: the forge recompiles artifacts of an outdated toolchain when idle "
                     "(compilation.idle_recompilation), or start from an empty state dir")
    return ok("torch", f"torch {have}" + (f"; all {sum(built.values())} stored artifact(s) built with it" if built else ""))


def _torch_requirement() -> Any:
    from importlib.metadata import PackageNotFoundError, requires

    try:
        from packaging.requirements import Requirement
    except ImportError:  # packaging is everywhere pip is, but not a dependency of ours
        return None
    try:
        for line in requires("tezzeret") or []:
            req = Requirement(line)
            if req.name == "torch" and req.marker is None:
                return req.specifier
    except PackageNotFoundError:
        return None
    return None


def check_isa(settings: Settings, manifests: list[Any]) -> Check:
    from tezzeret.artifact.target import CPU_MARCH, ISA_LEVELS, best_isa, cpu_flags, isa_level, machine

    if machine() not in ("x86_64", "AMD64"):
        return ok("isa", f"{machine()}: the ISA pin ({CPU_MARCH}) applies to x86-64 hosts only")
    flags = cpu_flags()
    pinned = isa_level()
    needs = next(n for isa, _, n in ISA_LEVELS if isa == pinned)
    missing = [f for f in needs if f not in flags]
    if missing:
        return error("isa", f"this CPU lacks {', '.join(missing)}: workers build {CPU_MARCH} ({pinned}) code, "
                     "which cannot run here", f"run the forge on a CPU with {pinned} ({CPU_MARCH})")
    stored = Counter(m.target for m in manifests if m is not None and m.target.startswith("cpu-"))
    unrunnable = []
    for target, n in stored.items():
        isa = target.rsplit("-", 1)[-1]
        level = next((lv for lv in ISA_LEVELS if lv[0] == isa), None)
        if level is not None and any(f not in flags for f in level[2]):
            unrunnable.append(f"{n} built for {isa}")
    if unrunnable:
        return error("isa", f"the store holds artifacts this CPU cannot run: {', '.join(unrunnable)}",
                     "serve them from a host with that ISA level, or rebuild them here")
    return ok("isa", f"CPU runs {best_isa(flags)}; artifacts are built for {pinned} ({CPU_MARCH})")


def check_artifacts(settings: Settings, manifests: list[Any], why_unread: str | None) -> Check:
    from tezzeret.artifact.target import preflight

    if why_unread:
        return warn("artifacts", why_unread, "check the store's permissions; run doctor as the service's user")
    if not manifests:
        return ok("artifacts", f"no artifacts in {settings.store_dir} yet")
    verdicts: Counter[str] = Counter()
    reasons: Counter[tuple[str, str]] = Counter()
    for manifest in manifests:
        if manifest is None:
            verdicts["incompatible"] += 1
            reasons[("incompatible", "a manifest does not decode as leyline.CompiledKernelArtifact")] += 1
            continue
        pre = preflight(manifest)
        verdicts[pre.verdict] += 1
        for r in pre.reasons:
            reasons[(pre.verdict, r)] += 1
    summary = ", ".join(f"{n} {v.replace('_', ' ')}" for v, n in sorted(verdicts.items()))
    def top(verdict: str) -> str:
        return "; ".join([f"{r} ({n}x)" for (v, r), n in reasons.most_common() if v == verdict][:3])

    if verdicts["incompatible"]:
        return error("artifacts", f"{len(manifests)} artifact(s): {summary}. {top('incompatible')}",
                     "match this host to the artifacts (torch, Python, CPU), or rebuild them here; "
                     "loaders on this host refuse the incompatible ones")
    note = f" ({top('not_optimal')})" if verdicts["not_optimal"] else ""
    return ok("artifacts", f"{len(manifests)} artifact(s): {summary}{note}")


# ---------------------------------------------------------------- sandbox


def check_bubblewrap(settings: Settings) -> Check:
    from tezzeret.sandbox.isolation import choose_level, probe_level

    works, why = probe_level("bwrap")
    if works:
        return ok("bubblewrap", f"{shutil.which('bwrap')} runs a sandbox (network, PID, IPC, UTS namespaces, read-only root)")
    fix = ("apt-get install bubblewrap; where it is installed but refused, allow user namespaces "
           "(see the user-namespaces check)")
    if settings.sandbox.isolation == "bwrap":
        return error("bubblewrap", f"sandbox.isolation is bwrap and it does not work: {why}; the forge will not start", fix)
    level, _ = choose_level(settings.sandbox.isolation) if settings.sandbox.isolation == "auto" else (settings.sandbox.isolation, [])
    return warn("bubblewrap", f"bubblewrap does not work ({why}): workers would run under '{level}', "
                "with weaker isolation (health: weak-isolation)", fix)


def _sysctl(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def check_user_namespaces(settings: Settings) -> Check:
    if os.geteuid() == 0:
        return ok("user-namespaces", "running as root: bubblewrap creates its namespaces without unprivileged "
                  "user namespaces (workers still drop to sandbox.worker_uid)")
    problems = []
    if _sysctl("/proc/sys/user/max_user_namespaces") == "0":
        problems.append("user.max_user_namespaces is 0")
    if _sysctl("/proc/sys/kernel/unprivileged_userns_clone") == "0":
        problems.append("kernel.unprivileged_userns_clone is 0")
    if _sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1":
        problems.append("AppArmor restricts unprivileged user namespaces")
    exe = shutil.which("unshare")
    if exe is not None:
        try:
            probe = subprocess.run([exe, "--user", "--map-root-user", "--", "/bin/true"], capture_output=True, timeout=10)
            if probe.returncode != 0:
                problems.append(f"unshare --user fails: {probe.stderr.decode(errors='replace').strip()[-200:]}")
        except (OSError, subprocess.TimeoutExpired) as exc:
            problems.append(f"unshare --user fails: {exc}")
    if problems:
        return warn("user-namespaces", "; ".join(problems) + ": bubblewrap cannot sandbox workers for this user",
                    "sysctl -w kernel.unprivileged_userns_clone=1 (Debian), or "
                    "kernel.apparmor_restrict_unprivileged_userns=0 / an AppArmor profile for bwrap (Ubuntu), "
                    "or user.max_user_namespaces=15000; in a container, allow clone(CLONE_NEWUSER)")
    return ok("user-namespaces", "unprivileged user namespaces work")


def check_cgroups(settings: Settings) -> Check:
    from tezzeret.sandbox.throttle import WorkerCgroup

    if settings.sandbox.contended_cpu_quota == 0:
        return ok("cgroups", "the CPU cap is off by configuration (sandbox.contended_cpu_quota: 0)")
    group, why = WorkerCgroup.create(f"tezzeret-doctor-{os.getpid()}", settings.sandbox.throttle_period_ms * 1000)
    if group is None:
        return warn("cgroups", f"no cgroup for the workers' CPU cap ({why}): while training keeps the host busy, "
                    "compiles take CPU from it uncapped",
                    "run the forge as root, or delegate the cpu controller to its user "
                    "(systemd: Delegate=cpu in the unit); or accept it and set sandbox.contended_cpu_quota: 0")
    try:
        group.set_quota(settings.sandbox.contended_cpu_quota)
    finally:
        group.remove()
    return ok("cgroups", f"cgroup v{group.version} cpu controller is writable: the workers' CPU cap "
              f"({settings.sandbox.contended_cpu_quota} cores while the host is busy) works")


# ---------------------------------------------------------------- the state dir


def check_state_dir(settings: Settings) -> Check:
    path = settings.state_dir.expanduser()
    if not path.exists():
        parent = _existing(path)
        if os.access(parent, os.W_OK | os.X_OK):
            return ok("state-dir", f"{path} does not exist yet; the forge creates it under {parent}")
        return error("state-dir", f"{path} does not exist and {parent} is not writable by uid {os.geteuid()}",
                     f"mkdir -p {path} && chown {os.geteuid()} {path}, or point state_dir elsewhere")
    if not path.is_dir():
        return error("state-dir", f"{path} is not a directory", "point state_dir at a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        return error("state-dir", f"{path} is not writable by uid {os.geteuid()} (owner uid {path.stat().st_uid})",
                     f"chown -R {os.geteuid()} {path}, or run the forge as its owner")
    return ok("state-dir", f"{path} is writable")


def check_disk(settings: Settings) -> Check:
    where = _existing(settings.state_dir)
    usage = shutil.disk_usage(where)
    vfs = os.statvfs(where)
    free = usage.free
    msg = f"{free / 1024**3:.1f} GiB free of {usage.total / 1024**3:.1f} GiB on the state dir's file system ({where})"
    fix = (f"free space on that file system (the Inductor cache {settings.inductor_cache_dir} can go while the forge "
           "is stopped), grow it, or move state_dir to a larger disk")
    if vfs.f_files and vfs.f_favail < 1000:
        return error("disk", f"only {vfs.f_favail} inodes free at {where}", fix)
    if free < DISK_ERROR_BYTES:
        return error("disk", msg + f": under {DISK_ERROR_BYTES // 1024**2} MiB, the WAL and store will fail", fix)
    if free < DISK_WARN_BYTES:
        return warn("disk", msg + f": under {DISK_WARN_BYTES // 1024**3} GiB (the TezzeretDiskLow alert fires)", fix)
    return ok("disk", msg)


def check_filesystem(settings: Settings) -> Check:
    from tezzeret.wal.mounts import check_directory

    verdict = check_directory(_existing(settings.wal_dir))
    mount = verdict.mount
    where = f"{mount.fs_type} on {mount.device}, mounted at {mount.mount_point}" if mount else "unknown"
    if verdict.unsafe:
        return error("filesystem", "; ".join(verdict.unsafe), "remount as the message says, or put state_dir "
                     "(and wal.path) on a local ext4 or xfs volume with write barriers")
    if verdict.notes:
        return warn("filesystem", "; ".join(verdict.notes), "put state_dir (and wal.path) on a persistent local "
                    "ext4 or xfs volume")
    return ok("filesystem", f"the WAL's file system is {where}")


def check_fsync(settings: Settings) -> Check:
    where = _existing(settings.wal_dir)
    probe = where / f".tezzeret-doctor-{os.getpid()}"
    samples: list[float] = []
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            block = os.urandom(4096)
            for _ in range(FSYNC_SAMPLES):
                os.write(fd, block)
                t0 = time.perf_counter()
                os.fsync(fd)
                samples.append((time.perf_counter() - t0) * 1000)
        finally:
            os.close(fd)
    except OSError as exc:
        return error("fsync", f"cannot write and sync a file in {where}: {exc.strerror or exc}",
                     "free space and fix permissions on the state dir (see the disk and state-dir checks)")
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    p50, worst = statistics.median(samples), max(samples)
    msg = f"{FSYNC_SAMPLES} fsyncs of 4 KiB in {where}: p50 {p50:.2f} ms, max {worst:.2f} ms"
    if p50 > FSYNC_WARN_MS:
        return warn("fsync", msg + f": over {FSYNC_WARN_MS:.0f} ms, every WAL commit (two syncs) will be slow",
                    "put the WAL (wal.path) on a faster local disk, or one not shared with heavy writers")
    return ok("fsync", msg)


# ---------------------------------------------------------------- Redis, Ray


def check_redis(settings: Settings) -> Check:
    if not settings.redis_url:
        return ok("redis", "not configured (redis_url unset): bus, emergency path and L3 cache run in process")
    import redis

    where = urlparse(settings.redis_url)._replace(netloc=urlparse(settings.redis_url).hostname or "").geturl()
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        return error("redis", f"cannot reach Redis at {where}: {exc}",
                     "start redis-server, check redis_url (host, port, password) and the network")
    try:
        conf: dict[str, str] = {}
        for key in ("appendonly", "appendfsync", "save", "maxmemory-policy"):
            conf.update({str(k.decode() if isinstance(k, bytes) else k): str(v.decode() if isinstance(v, bytes) else v)
                         for k, v in client.config_get(key).items()})
    except redis.exceptions.RedisError as exc:
        return warn("redis", f"Redis at {where} answers, but its persistence settings cannot be read ({exc})",
                    "allow CONFIG GET for the forge's user, or check appendonly/save by hand")
    finally:
        client.close()
    policy = conf.get("maxmemory-policy", "noeviction")
    if policy.startswith("allkeys"):
        return warn("redis", f"Redis at {where} evicts any key under memory pressure (maxmemory-policy {policy}): "
                    "streams and consumer groups can vanish", "CONFIG SET maxmemory-policy noeviction (and persist it in redis.conf)")
    if conf.get("appendonly") == "yes":
        return ok("redis", f"Redis at {where}: AOF on (appendfsync {conf.get('appendfsync')}), maxmemory-policy {policy}")
    if conf.get("save"):
        return warn("redis", f"Redis at {where} persists by snapshots only (save {conf['save']!r}): a Redis crash "
                    "loses the stream entries since the last one", "CONFIG SET appendonly yes (and in redis.conf)")
    return warn("redis", f"Redis at {where} has no persistence (appendonly no, save ''): a restart loses pending "
                "emergency requests and consumer-group state", "CONFIG SET appendonly yes (and in redis.conf)")


def check_ray(settings: Settings) -> Check:
    # `ray.*` and `sandbox.backend` may not exist in this version's settings: read them defensively.
    ray_settings = getattr(settings, "ray", None)
    address = getattr(ray_settings, "address", None) if ray_settings is not None else None
    backend = getattr(settings.sandbox, "backend", "local")
    if backend != "ray" and not address:
        return ok("ray", "not configured: compile jobs run in this host's sandbox")
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        return error("ray", "sandbox.backend is ray but the ray package is not installed", "pip install ray")
    if not address or address == "auto":
        return ok("ray", "ray is installed; no ray.address, so the forge starts or joins a local cluster")
    parsed = urlparse(address if "://" in address else f"ray://{address}")
    host, port = parsed.hostname or "127.0.0.1", parsed.port or (10001 if parsed.scheme == "ray" else 6379)
    try:
        with socket.create_connection((host, port), timeout=3):
            pass
    except OSError as exc:
        return error("ray", f"cannot reach the Ray cluster at {host}:{port}: {exc}",
                     "start the cluster (ray start --head), or fix ray.address")
    return ok("ray", f"the Ray cluster at {host}:{port} accepts connections")


# ---------------------------------------------------------------- clock, keys


def check_clock(settings: Settings) -> Check:
    wall0, mono0 = time.time(), time.monotonic()
    time.sleep(0.2)
    drift = abs((time.time() - wall0) - (time.monotonic() - mono0))
    if wall0 < EARLIEST_SANE_WALL:
        return error("clock", f"the wall clock says {time.strftime('%Y-%m-%d', time.gmtime(wall0))}: it was never set",
                     "set the time and enable NTP (timedatectl set-ntp true, or chrony)")
    if drift > 0.05:
        return warn("clock", f"the wall clock moved {drift * 1000:.0f} ms against the monotonic clock in 200 ms: "
                    "it is being stepped", "let NTP slew instead of step (chrony: makestep only at boot)")
    synced = _ntp_synchronized()
    if synced is False:
        return warn("clock", "the clock is not NTP-synchronised: audit records and artifact timestamps drift "
                    "from other hosts'", "timedatectl set-ntp true, or install chrony")
    state = "NTP-synchronised" if synced else "NTP state unknown (no timedatectl or chronyc answer)"
    return ok("clock", f"{state}; timeouts use the monotonic clock, wall time only stamps records")


def _ntp_synchronized() -> bool | None:
    for argv, parse in (
        (["timedatectl", "show", "-p", "NTPSynchronized", "--value"], lambda out: out.strip() == "yes"),
        (["chronyc", "tracking"], lambda out: "Leap status     : Normal" in out),
    ):
        if shutil.which(argv[0]) is None:
            continue
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if proc.returncode == 0 and proc.stdout.strip():
            return bool(parse(proc.stdout))
    return None


def check_keys(settings: Settings) -> Check:
    from tezzeret.store.signing import PRIVATE_KEY_FILE

    if not settings.signing.enabled:
        return ok("keys", "signing is off (signing.enabled: false): loaders that require signatures refuse the artifacts")
    key_dir = settings.key_dir.expanduser()
    me = os.geteuid()
    if not key_dir.exists():
        return ok("keys", f"{key_dir} does not exist yet; the forge creates it (0700) with a new key pair")
    st = key_dir.stat()
    if not stat.S_ISDIR(st.st_mode):
        return error("keys", f"{key_dir} is not a directory", "point signing.key_dir at a directory")
    problems, fixes = [], []
    if st.st_uid != me:
        problems.append(f"{key_dir} is owned by uid {st.st_uid}, the forge runs as uid {me}")
        fixes.append(f"chown -R {me} {key_dir}")
    if st.st_mode & 0o077:
        problems.append(f"{key_dir} has mode {stat.S_IMODE(st.st_mode):04o}: group or others can enter")
        fixes.append(f"chmod 700 {key_dir}")
    private = key_dir / PRIVATE_KEY_FILE
    if private.exists():
        pst = private.stat()
        if pst.st_uid != me:
            problems.append(f"{private.name} is owned by uid {pst.st_uid}")
            fixes.append(f"chown {me} {private}")
        if pst.st_mode & 0o077:
            problems.append(f"{private.name} has mode {stat.S_IMODE(pst.st_mode):04o}: group or others can read the "
                            "signing key")
            fixes.append(f"chmod 600 {private}")
    if problems:
        return error("keys", "; ".join(problems) + ". The forge refuses to start with a key others can read",
                     "; ".join(fixes) + " (and if others could read the private key, replace the key pair and "
                     "re-publish the public key to loaders)")
    have = "a signing key" if private.exists() else "no key yet (the forge creates one)"
    return ok("keys", f"{key_dir}: 0700, owned by uid {me}, {have}")


# ---------------------------------------------------------------- running them


def run_checks(settings: Settings) -> list[Check]:
    """Every check, in the order an operator fixes things; a check that crashes reports an error."""
    manifests, why_unread = store_manifests(settings.store_dir)
    checks: list[tuple[str, Callable[[], Check]]] = [
        ("torch", lambda: check_torch(settings, manifests)),
        ("isa", lambda: check_isa(settings, manifests)),
        ("artifacts", lambda: check_artifacts(settings, manifests, why_unread)),
        ("bubblewrap", lambda: check_bubblewrap(settings)),
        ("user-namespaces", lambda: check_user_namespaces(settings)),
        ("cgroups", lambda: check_cgroups(settings)),
        ("state-dir", lambda: check_state_dir(settings)),
        ("disk", lambda: check_disk(settings)),
        ("filesystem", lambda: check_filesystem(settings)),
        ("fsync", lambda: check_fsync(settings)),
        ("redis", lambda: check_redis(settings)),
        ("ray", lambda: check_ray(settings)),
        ("clock", lambda: check_clock(settings)),
        ("keys", lambda: check_keys(settings)),
    ]
    out = []
    for name, run in checks:
        try:
            out.append(run())
        except Exception as exc:  # noqa: BLE001 - one broken probe must not hide the other checks
            out.append(error(name, f"the check itself failed: {type(exc).__name__}: {exc}",
                             "report this; the other checks still ran"))
    return out


def register(app: typer.Typer) -> None:
    """Add `tezzeret doctor` to `app`."""

    @app.command()
    def doctor(
        config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML settings file, as for `serve`."),
        state_dir: Optional[Path] = typer.Option(None, help="State directory (default: the settings' state_dir)."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON document instead of a table."),
    ) -> None:
        """Check this host before starting the forge: say what is wrong and how to fix it.

        Exit 0 when every check passes, 1 with warnings, 2 with errors.
        """
        from tezzeret.config import load_settings

        try:
            settings = load_settings(config, **({"state_dir": state_dir} if state_dir else {}))
        except TezzeretError as exc:
            checks = [error("config", str(exc), "fix the key named above in the config file or environment")]
        else:
            checks = run_checks(settings)
        code = exit_code(checks)
        if as_json:
            worst = next(k for k, v in SEVERITY.items() if v == code)
            typer.echo(json.dumps({"status": worst, "exit_code": code, "checks": [asdict(c) for c in checks]}, indent=2))
            raise typer.Exit(code)
        _print(checks, code)
        raise typer.Exit(code)


def _print(checks: list[Check], code: int) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    colour = {"ok": "green", "warn": "yellow", "error": "red"}
    table = Table(title="tezzeret doctor", show_lines=True)
    for col in ("check", "status", "what was found", "fix"):
        table.add_column(col, overflow="fold")
    for c in checks:
        table.add_row(c.name, f"[{colour[c.status]}]{c.status}[/]", escape(c.message), escape(c.fix))
    console = Console() if os.isatty(1) else Console(width=160)
    console.print(table)
    counts = Counter(c.status for c in checks)
    console.print(f"{counts['ok']} ok, {counts['warn']} warning(s), {counts['error']} error(s); exit {code}")
