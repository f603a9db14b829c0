"""The HTTP/1.1 connection: uvicorn's h11 protocol with a read deadline per request.

Owns: cutting off clients that send too slowly. uvicorn times out idle keep-alive connections but
nothing else: a client that sends its headers or body a byte at a time, or opens a connection and
sends nothing, holds it for ever. Here a request must arrive in full (headers and body) within
`api.read_timeout_s` of its first byte, and a new connection must start one within the same time;
otherwise the connection is closed, the refusal reported once through `on_cut_off` (one log line,
one count, one audit record), and a handler still waiting for that body sees the request state
`cut_off = "slow_client"`. Malformed HTTP (uvicorn answers 400 itself) is reported through
`on_malformed`. Must never read or answer a request itself beyond that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

# (client address or None, "METHOD /path" or None when no request line arrived, whether a route
# handler was still reading the body and will audit the cut itself)
CutOffCallback = Callable[[str | None, str | None, bool], None]


def deadline_protocol(
    read_timeout_s: float,
    on_cut_off: CutOffCallback,
    on_malformed: Callable[[str | None], None] | None = None,
) -> type[H11Protocol]:
    """An `H11Protocol` class (for `uvicorn.Config(http=...)`) enforcing `read_timeout_s`."""

    class DeadlineH11Protocol(H11Protocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._deadline: asyncio.TimerHandle | None = None
            # h11 says when a request's last byte arrived only through the events uvicorn pulls.
            pull = self.conn.next_event

            def next_event() -> Any:
                event = pull()
                if isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    self._disarm()
                return event

            self.conn.next_event = next_event  # type: ignore[method-assign]  # h11 has no hook for a read deadline; this connection only

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # uvicorn narrows BaseTransport the same way
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            # The first byte of a new request starts its clock (a request still arriving keeps its own).
            if self._deadline is None and self.conn.their_state in (h11.IDLE, h11.SEND_BODY):
                self._arm()
            super().data_received(data)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def send_400_response(self, msg: str) -> None:
            self._disarm()
            if on_malformed is not None:
                on_malformed(self.client[0] if self.client else None)
            super().send_400_response(msg)

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(read_timeout_s, self._timed_out)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _timed_out(self) -> None:
            self._deadline = None
            if self.transport is None or self.transport.is_closing():
                return
            cycle = self.cycle
            reading = self.conn.their_state is h11.SEND_BODY and cycle is not None and not cycle.response_complete
            request = f"{self.scope['method']} {self.scope['path']}" if reading and self.scope else None
            in_handler = reading and not cycle.response_started
            if in_handler:
                self.scope.setdefault("state", {})["cut_off"] = "slow_client"
            try:
                on_cut_off(self.client[0] if self.client else None, request, in_handler)
            finally:
                self.transport.close()

    return DeadlineH11Protocol
