"""Isolation levels for sandbox workers: detecting what this machine allows and building the argv.

Owns: the choice between bubblewrap, `unshare`, and a plain subprocess (in that order of strength),
the probe that proves a level really works here, and the exact command line that starts a worker
under it (namespaces, read-only root, the few writable and hidden paths, the uid a worker drops
to). It must never start long-lived processes (probes run `true` and exit) nor weaken a level the
configuration named explicitly: that raises `IsolationUnavailable`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import site
import stat
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tezzeret.sandbox.errors import IsolationUnavailable

LEVELS = ("bwrap", "unshare", "subprocess")

_UNSHARE_FLAGS = ["--net", "--pid", "--ipc", "--uts", "--fork", "--kill-child", "--mount", "--mount-proc"]


@dataclass(frozen=True)
class SandboxPlan:
    """Everything that decides what a worker can see and who it runs as."""

    writable: Sequence[Path]
    hidden: Sequence[Path]
    readable: Sequence[Path] = ()
    drop_to_uid: int | None = None
    gpu_devices: Sequence[str] = field(default_factory=tuple)


@dataclass(frozen=True)
class Isolation:
    """The level in force and what it guarantees, as reported in status and logs."""

    level: str
    net_isolated: bool
    pid_namespace: bool
    fs_readonly: bool
    nproc_enforced: bool
    note: str = ""


def _probe(argv: list[str]) -> tuple[bool, str]:
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    return proc.returncode == 0, proc.stderr.decode(errors="replace").strip()[-300:]


def _bwrap_core() -> list[str]:
    return [
        "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
        "--die-with-parent", "--new-session", "--cap-drop", "ALL",
    ]


def probe_level(level: str) -> tuple[bool, str]:
    """Whether `level` works on this machine, and why not."""
    if level == "subprocess":
        return True, ""
    if level == "bwrap":
        exe = shutil.which("bwrap")
        if exe is None:
            return False, "bwrap is not installed (apt-get install bubblewrap)"
        return _probe([exe, *_bwrap_core(), "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--", "/bin/true"])
    if level == "unshare":
        exe = shutil.which("unshare")
        if exe is None:
            return False, "unshare (util-linux) is not installed"
        flags = _UNSHARE_FLAGS if os.geteuid() == 0 else ["--user", "--map-root-user", *_UNSHARE_FLAGS]
        return _probe([exe, *flags, "--", "/bin/true"])
    raise IsolationUnavailable(f"unknown sandbox.isolation level {level!r}; use one of auto, {', '.join(LEVELS)}")


def choose_level(requested: str) -> tuple[str, list[str]]:
    """The level to use and the reasons stronger ones were passed over.

    `auto` takes the strongest level that works; a named level that does not work raises, so the
    sandbox is never silently weaker than configured.
    """
    if requested != "auto":
        ok, why = probe_level(requested)
        if not ok:
            raise IsolationUnavailable(
                f"sandbox.isolation is {requested!r} but it does not work on this machine: {why}. "
                "Install it, or set sandbox.isolation to auto to accept a weaker level (reported in health)."
            )
        return requested, []
    skipped: list[str] = []
    for level in LEVELS:
        ok, why = probe_level(level)
        if ok:
            return level, skipped
        skipped.append(f"{level}: {why}")
    return "subprocess", skipped


def describe(level: str, *, drops_uid: bool) -> Isolation:
    nproc = drops_uid or os.geteuid() != 0
    root_note = "" if nproc else "workers run as root with its capabilities: RLIMIT_NPROC is not enforced by the kernel and host files are writable"
    if level == "bwrap":
        return Isolation("bwrap", True, True, True, nproc, root_note)
    if level == "unshare":
        return Isolation("unshare", True, True, False, nproc, ("filesystem is not read-only; " + root_note).strip("; "))
    return Isolation("subprocess", False, False, False, nproc, ("no network or filesystem isolation; " + root_note).strip("; "))


def interpreter_paths(extra: Sequence[Path] = ()) -> list[Path]:
    """Directories a worker must read: the interpreter, its stdlib and site-packages, task code.

    Deliberately not `sys.path` as a whole: its first entry is the service's script directory or
    working directory (often /tmp or a home), which must not be bound back into the sandbox.
    """
    import sysconfig

    import tezzeret

    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(os.path.realpath(sys.executable)).parent}
    for key in ("stdlib", "platstdlib", "purelib", "platlib", "include"):
        with contextlib.suppress(KeyError):
            paths.add(Path(sysconfig.get_paths()[key]))
    paths.update(Path(p) for p in site.getsitepackages())
    paths.add(Path(tezzeret.__file__).resolve().parent.parent)
    paths.update(Path(p) for p in extra)
    resolved = {Path(os.path.realpath(p)) for p in paths if os.path.exists(p)}
    resolved |= {Path(os.path.abspath(p)) for p in paths if os.path.exists(p)}
    resolved = {p for p in resolved if len(p.parts) > 2 or p.parts[-1] not in ("tmp", "root", "home")}
    # Keep only the outermost of nested paths: binding a parent already shows its children.
    ordered = sorted(resolved, key=lambda p: len(p.parts))
    outer: list[Path] = []
    for path in ordered:
        if not any(path == o or o in path.parents for o in outer):
            outer.append(path)
    return outer


def _closed_ancestors(path: Path) -> list[Path]:
    """Ancestors that a non-root uid cannot traverse (e.g. a 0700 home holding the interpreter)."""
    out = []
    for anc in reversed(path.parents):
        if anc == Path("/"):
            continue
        try:
            mode = os.stat(anc).st_mode
        except OSError:
            continue
        if not mode & stat.S_IXOTH:
            out.append(anc)
    return out


def _is_under(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


def _open_parents(path: Path, masked: Sequence[Path], made: set[Path]) -> list[str]:
    """`--dir` for each parent bwrap would otherwise create 0700 inside a tmpfs (untraversable)."""
    tops = [m for m in masked if m in path.parents]
    if not tops:
        return []
    top = max(tops, key=lambda p: len(p.parts))
    out: list[str] = []
    for anc in reversed(path.parents):
        if top in anc.parents and anc not in made:
            made.add(anc)
            out += ["--perms", "0755", "--dir", str(anc)]
    return out


def gpu_device_nodes() -> list[str]:
    return sorted(glob.glob("/dev/nvidia*")) + sorted(glob.glob("/dev/dri/renderD*"))


def bwrap_argv(plan: SandboxPlan, command: Sequence[str]) -> list[str]:
    """The bubblewrap command line: namespaces, read-only root, a fresh /tmp, binds, covers."""
    exe = shutil.which("bwrap") or "bwrap"
    argv = [exe, *_bwrap_core()]
    if plan.drop_to_uid is not None:
        # Only what `setresuid`/`setgroups` need; they are lost for good once the worker drops.
        argv += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    argv += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--perms", "1777", "--tmpfs", "/tmp"]
    for node in plan.gpu_devices:
        argv += ["--dev-bind", node, node]
    masked: list[Path] = [Path("/tmp")]
    readable = [Path(p) for p in plan.readable]
    if plan.drop_to_uid is not None:
        closed: list[Path] = []
        for path in readable:
            for anc in _closed_ancestors(path):
                if anc not in closed:
                    closed.append(anc)
        for anc in sorted(closed, key=lambda p: len(p.parts)):
            # A world-traversable empty dir in place of e.g. /root: its other contents stay hidden.
            argv += ["--perms", "0755", "--tmpfs", str(anc)]
            masked.append(anc)
    made: set[Path] = set()
    for path in readable:
        if _is_under(path, masked):
            argv += _open_parents(path, masked, made) + ["--ro-bind", str(path), str(path)]
    for path in plan.hidden:
        if path.exists() and not _is_under(path, masked):
            # Empty and world-traversable: it only has to hold the mount points bound below.
            argv += ["--perms", "0755", "--tmpfs", str(path)]
            masked.append(path)
    for path in plan.writable:
        argv += _open_parents(path, masked, made) + ["--bind", str(path), str(path)]
    # A secret dir inside a writable one (odd, but configurable) is covered after the bind.
    for path in plan.hidden:
        if path.exists() and _is_under(path, list(plan.writable)):
            argv += ["--perms", "0700", "--tmpfs", str(path)]
    argv += ["--chdir", "/", "--"]
    return argv + list(command)


def unshare_argv(command: Sequence[str]) -> list[str]:
    exe = shutil.which("unshare") or "unshare"
    flags = _UNSHARE_FLAGS if os.geteuid() == 0 else ["--user", "--map-root-user", *_UNSHARE_FLAGS]
    return [exe, *flags, "--", *command]


def can_drop_uid(level: str, readable: Sequence[Path]) -> bool:
    """Whether workers can run as a non-root uid: we are root, and the uid can read the interpreter.

    Under bubblewrap closed ancestors are replaced by open ones, so it always can; elsewhere only
    when every path the interpreter needs is traversable by others.
    """
    if os.geteuid() != 0:
        return False
    if level == "bwrap":
        return True
    return all(not _closed_ancestors(p) for p in readable)


def build_argv(level: str, plan: SandboxPlan, command: Sequence[str]) -> list[str]:
    if level == "bwrap":
        return bwrap_argv(plan, command)
    if level == "unshare":
        return unshare_argv(command)
    return list(command)
