"""The machine record every benchmark prints beside its numbers (they are shared and noisy)."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path


def machine(directory: Path | None = None) -> dict[str, object]:
    """CPU, cores, torch and Python versions and the load when called; with `directory`, also the
    filesystem it lies on (for benchmarks that measure a disk)."""
    from tezzeret.artifact.target import cpu_model

    model = cpu_model()
    try:
        torch_version: str | None = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = None
    info: dict[str, object] = {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "torch": torch_version,
        "python": platform.python_version(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    if directory is not None:
        from tezzeret.wal.mounts import check_directory

        mount = check_directory(directory).mount
        info["filesystem"] = f"{mount.fs_type} {mount.device}" if mount else None
    return info
