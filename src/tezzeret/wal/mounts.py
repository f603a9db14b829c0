"""Checks the mount options of the filesystem that holds the WAL (upstream §1.3 step 2).

Owns: finding the WAL directory's mount in `/proc/mounts` and judging its options. Options that
explicitly weaken durability (`nobarrier`, `barrier=0`, `data=writeback`, `async` on a network
filesystem) are *unsafe*; filesystems that do not survive power loss at all (tmpfs, ramfs) or whose
durability is the host's (overlay) are *noted*. Must never change a mount or refuse anything itself:
the caller decides what `recovery_validation` does with the verdict.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

_NETWORK_FS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "fuse.sshfs", "ceph", "glusterfs"}
_VOLATILE_FS = {"tmpfs", "ramfs", "devtmpfs"}
_HOST_DEPENDENT_FS = {"overlay", "overlayfs", "aufs", "fuse-overlayfs"}


@dataclass(frozen=True)
class MountInfo:
    device: str
    mount_point: str
    fs_type: str
    options: tuple[str, ...]


@dataclass(frozen=True)
class MountVerdict:
    mount: MountInfo | None
    unsafe: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.unsafe


def _unescape(text: str) -> str:
    # /proc/mounts writes space, tab, newline and backslash as octal escapes.
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        text = text.replace(code, char)
    return text


def parse_mounts(text: str) -> list[MountInfo]:
    mounts = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        mounts.append(
            MountInfo(_unescape(parts[0]), _unescape(parts[1]), parts[2], tuple(parts[3].split(",")))
        )
    return mounts


def find_mount(directory: Path, mounts: list[MountInfo]) -> MountInfo | None:
    """The mount whose mount point is the longest prefix of the directory's real path."""
    real = os.path.realpath(directory)
    best: MountInfo | None = None
    for mount in mounts:
        point = mount.mount_point.rstrip("/") or "/"
        inside = real == point or real.startswith(point + "/") or point == "/"
        # A later line for the same point shadows an earlier one (stacked mounts).
        if inside and (best is None or len(point) >= len(best.mount_point.rstrip("/") or "/")):
            best = mount
    return best


def judge(mount: MountInfo | None) -> MountVerdict:
    if mount is None:
        return MountVerdict(None, notes=["mount of the WAL directory not found in /proc/mounts"])
    unsafe: list[str] = []
    notes: list[str] = []
    opts = set(mount.options)
    where = f"{mount.mount_point} ({mount.fs_type} on {mount.device})"
    if "nobarrier" in opts or "barrier=0" in opts:
        unsafe.append(f"{where} is mounted with write barriers off: a power loss can reorder "
                      "committed records; remount with barrier=1")
    if "data=writeback" in opts:
        unsafe.append(f"{where} uses data=writeback: data may reach disk after its metadata; "
                      "remount with data=ordered or data=journal")
    if mount.fs_type in _NETWORK_FS and "async" in opts:
        unsafe.append(f"{where} is a network filesystem mounted async: the server may acknowledge "
                      "writes it has not stored; mount it with sync")
    if mount.fs_type in _VOLATILE_FS:
        notes.append(f"{where} lives in memory: the WAL survives process crashes, not power loss")
    if mount.fs_type in _HOST_DEPENDENT_FS:
        notes.append(f"{where} is an overlay: durability across power loss is the host's "
                     "filesystem's; mount a volume for the WAL in production")
    if mount.fs_type == "xfs" and "wsync" not in opts:
        notes.append(f"{where}: xfs without wsync (upstream recommends logbsize=256k,wsync)")
    return MountVerdict(mount, unsafe, notes)


def check_directory(directory: Path, proc_mounts: Path = Path("/proc/mounts")) -> MountVerdict:
    try:
        text = proc_mounts.read_text()
    except OSError:
        return MountVerdict(None, notes=[f"cannot read {proc_mounts}: mount options not checked"])
    return judge(find_mount(directory, parse_mounts(text)))
