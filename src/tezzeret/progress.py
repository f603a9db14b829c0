"""Progress of long commands: Rich's live bar on a terminal, plain timestamped lines anywhere else.

Owns: the one choice between the two (by whether the console writes to a terminal) and the plain
form: a line per phase or event, `[  12.3s] mlp_512: compiling at FAST`, written and flushed at once
so `make run > log`, CI logs and `| tee` show work as it happens (Rich only draws a bar on a
terminal, and off one printed nothing until the end), plus a heartbeat line when nothing was said
for `heartbeat_s`. Both forms take the same calls (`add_task`, `update`, `advance`, `print`, used as
a context manager). Must never decide anything about the work it reports.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Union

from rich.console import Console
from rich.errors import MarkupError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.text import Text

HEARTBEAT_S = 30.0


class PlainProgress:
    """Rich `Progress`'s calls, as plain lines with the time elapsed since it was made."""

    def __init__(self, console: Console, *, disable: bool = False, heartbeat_s: float | None = HEARTBEAT_S) -> None:
        self.console = console
        self.disable = disable
        self.heartbeat_s = heartbeat_s
        self._t0 = time.monotonic()
        self._last_line = self._t0
        self._tasks: dict[TaskID, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    # ------------------------------------------------------------------ Rich's calls

    def __enter__(self) -> PlainProgress:
        if self.heartbeat_s and not self.disable:
            self._beat = threading.Thread(target=self._heartbeat, name="progress-heartbeat", daemon=True)
            self._beat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=1.0)

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **_: Any) -> TaskID:
        task_id = TaskID(len(self._tasks))
        self._tasks[task_id] = {"description": description, "total": total, "completed": completed}
        self._line(self._describe(task_id))
        return task_id

    def update(self, task_id: TaskID, *, description: str | None = None, completed: float | None = None,
               total: float | None = None, advance: float | None = None, **_: Any) -> None:
        task = self._tasks[task_id]
        before = dict(task)
        if description is not None:
            task["description"] = description
        if total is not None:
            task["total"] = total
        if completed is not None:
            task["completed"] = completed
        if advance:
            task["completed"] += advance
        if task != before:
            self._line(self._describe(task_id))

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def print(self, *objects: Any, **_: Any) -> None:
        self._line(" ".join(_plain(o) for o in objects))

    # ------------------------------------------------------------------ lines

    def _describe(self, task_id: TaskID) -> str:
        task = self._tasks[task_id]
        if task["total"]:
            return f"{task['description']}: {task['completed']:g}/{task['total']:g}"
        return str(task["description"])

    def _line(self, text: str) -> None:
        if self.disable:
            return
        with self._lock:
            now = time.monotonic()
            self._last_line = now
            # Plain text: no markup, highlighting or wrapping, so a log line stays one line.
            self.console.print(f"[{now - self._t0:7.1f}s] {text}", markup=False, highlight=False,
                               soft_wrap=True, emoji=False)
            self.console.file.flush()

    def _heartbeat(self) -> None:
        assert self.heartbeat_s is not None
        while not self._stop.wait(min(self.heartbeat_s, 5.0)):
            if time.monotonic() - self._last_line >= self.heartbeat_s and self._tasks:
                self._line("still working: " + "; ".join(self._describe(t) for t in self._tasks))


def _plain(obj: Any) -> str:
    """What a Rich markup string says, without its styles (`[red]x[/red]` -> `x`)."""
    text = str(obj)
    try:
        return Text.from_markup(text).plain
    except MarkupError:
        return text


Display = Union[Progress, PlainProgress]


def progress_display(console: Console, *, disable: bool = False, transient: bool = False) -> Display:
    """A Rich progress bar when `console` is a terminal, else plain lines (`PlainProgress`)."""
    if console.is_terminal:
        return Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, disable=disable, transient=transient,
        )
    return PlainProgress(console, disable=disable)
