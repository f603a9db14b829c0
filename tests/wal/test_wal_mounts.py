"""Mount-option checks: what weakens durability, what is only noted, and strict refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from tezzeret.wal import Wal, WalOptions, WalUnsafeMount
from tezzeret.wal import mounts
from tezzeret.wal.mounts import check_directory, find_mount, judge, parse_mounts

SAMPLE = """\
/dev/vda / ext4 rw,relatime 0 0
tmpfs /run tmpfs rw,nosuid 0 0
/dev/vdb /data ext4 rw,nobarrier,data=writeback 0 0
/dev/vdc /data/wal xfs rw,wsync,logbsize=256k 0 0
srv:/x /mnt/nfs nfs4 rw,async,vers=4.2 0 0
overlay /ctr overlay rw,lowerdir=/a 0 0
/dev/vdd /with\\040space ext4 rw 0 0
"""


def _verdict(path: str) -> mounts.MountVerdict:
    return judge(find_mount(Path(path), parse_mounts(SAMPLE)))


def test_longest_prefix_wins_and_escapes_are_decoded() -> None:
    assert _verdict("/data/wal/x").mount.fs_type == "xfs"  # type: ignore[union-attr]
    assert _verdict("/data/other").mount.mount_point == "/data"  # type: ignore[union-attr]
    assert _verdict("/datax").mount.mount_point == "/"  # type: ignore[union-attr]
    assert _verdict("/with space/wal").mount.device == "/dev/vdd"  # type: ignore[union-attr]


def test_weakening_options_are_unsafe() -> None:
    unsafe = _verdict("/data/w").unsafe
    assert len(unsafe) == 2 and "barrier" in unsafe[0] and "writeback" in unsafe[1]
    assert "sync" in _verdict("/mnt/nfs/w").unsafe[0]
    for ok in ("/srv", "/data/wal", "/run/w", "/ctr/w"):
        assert _verdict(ok).ok, ok
    assert "power loss" in _verdict("/run/w").notes[0]
    assert "overlay" in _verdict("/ctr/w").notes[0]


def test_check_directory_reads_a_mounts_file(tmp_path: Path) -> None:
    fake = tmp_path / "mounts"
    fake.write_text(f"/dev/x {tmp_path} ext4 rw,barrier=0 0 0\n")
    assert not check_directory(tmp_path / "wal", fake).ok
    assert check_directory(tmp_path, tmp_path / "missing").notes


def test_strict_refuses_an_unsafe_mount_and_warn_opens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "mounts"
    fake.write_text(f"/dev/x {tmp_path} ext4 rw,nobarrier 0 0\n")
    real = mounts.check_directory
    monkeypatch.setattr(mounts, "check_directory", lambda d: real(d, fake))
    with pytest.raises(WalUnsafeMount, match="barriers off"):
        Wal.open(tmp_path / "wal", WalOptions(recovery_validation="strict"))
    with Wal.open(tmp_path / "wal", WalOptions(recovery_validation="warn")) as wal:
        assert any("barrier" in w for w in wal.recovery.mount_warnings)


def test_this_machines_wal_dir_opens_in_strict_mode(tmp_path: Path) -> None:
    with Wal.open(tmp_path, WalOptions(recovery_validation="strict")) as wal:
        assert wal.recovery.outcome == "empty"
