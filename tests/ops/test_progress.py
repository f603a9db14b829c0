"""Progress off a terminal: `tezzeret forge` and `tezzeret submit --wait` with their output in a pipe
print plain, timestamped lines per blueprint and phase while they work (not a bar drawn only at the
end); on a terminal the same code draws Rich's bar."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from serverproc import ServerProcess

from tezzeret.blueprint import library
from tezzeret.progress import PlainProgress, progress_display

LINE = re.compile(r"^\[\s*(\d+\.\d)s\] (.*)$")


def test_the_display_follows_the_terminal() -> None:
    assert isinstance(progress_display(Console(file=io.StringIO(), force_terminal=True)), Progress)
    out = io.StringIO()
    plain = progress_display(Console(file=out, force_terminal=False, width=40))
    assert isinstance(plain, PlainProgress)
    with plain:
        task = plain.add_task("forging 2 blueprints", total=2)
        plain.update(task, description="forging 2 blueprints")  # nothing changed: no line
        plain.print("[green]a_long_blueprint_name_that_does_not_wrap_at_forty_columns[/green] → artifact-id")
        plain.advance(task)
    lines = out.getvalue().splitlines()
    assert [LINE.match(x).group(2) for x in lines] == [  # type: ignore[union-attr]
        "forging 2 blueprints: 0/2",
        "a_long_blueprint_name_that_does_not_wrap_at_forty_columns → artifact-id",
        "forging 2 blueprints: 1/2",
    ]
    quiet = io.StringIO()
    with progress_display(Console(file=quiet), disable=True) as p:
        p.add_task("x", total=1)
    assert quiet.getvalue() == ""


def test_forge_prints_progress_lines_as_it_works_when_piped(tmp_path: Path) -> None:
    names = ["mlp_512", "residual_mlp_256"]
    argv = [sys.executable, "-m", "tezzeret.cli", "forge", "--strategy", "EMERGENCY", "--state-dir", str(tmp_path / "state")]
    for name in names:
        argv += ["--only", name]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TERM": "dumb"})
    arrived: list[tuple[float, str]] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            arrived.append((time.monotonic(), line.rstrip("\n")))

    reader = threading.Thread(target=read)
    reader.start()
    assert proc.stdout is not None
    stdout = proc.stdout.read()  # the closing table; stderr belongs to the reader
    proc.wait(timeout=300)
    reader.join(10)
    exited = time.monotonic()
    assert proc.returncode == 0, "\n".join(x for _, x in arrived) + stdout

    text = [x for _, x in arrived]
    assert all(LINE.match(x) for x in text), text
    assert "\x1b[" not in "".join(text) + stdout, "no terminal escapes in a pipe"
    said = [LINE.match(x).group(2) for x in text]  # type: ignore[union-attr]
    assert said[0].startswith("starting the forge in ")
    for name in names:
        assert f"{name}: compiling at EMERGENCY" in said, "\n".join(said)
        assert any(s.startswith(f"{name}: SUCCEEDED at EMERGENCY, compiled in ") for s in said), "\n".join(said)
    assert "forging 2 blueprints at EMERGENCY: 2/2" in said
    # The lines came while the work went on: the first long before the last (starting the forge
    # warms sandbox workers up, seconds), and the last before the process finished closing.
    first, last = arrived[0][0], arrived[-1][0]
    assert last - first > 2.0, [(round(t - first, 2), x) for t, x in arrived]
    assert exited - first > 2.0
    # The elapsed times printed grow with the work.
    elapsed = [float(LINE.match(x).group(1)) for x in text]  # type: ignore[union-attr]
    assert elapsed == sorted(elapsed) and elapsed[-1] > 2.0
    assert "2/2 blueprints compiled" in stdout


def test_submit_wait_prints_progress_lines_when_piped(forge: ServerProcess) -> None:
    path = next(lb.path for lb in library() if lb.name == "squeeze_excitation_64")
    out = subprocess.run(
        [sys.executable, "-m", "tezzeret.cli", "submit", str(path), "--strategy", "EMERGENCY", "--wait", "--url", forge.url],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    said = [m.group(2) for m in map(LINE.match, out.stdout.splitlines()) if m]
    assert said[0] == "compiling: 0/1" and said[-1] == "compiling: 1/1", out.stdout
    assert any(s.startswith("squeeze_excitation_64 → ") for s in said), out.stdout
    assert "\x1b[" not in out.stdout + out.stderr
