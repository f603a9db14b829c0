"""The forge's typed errors: what went wrong with a submission, a job or the service's state.

Owns: every exception the forge and its HTTP face raise on purpose, each with a stable `code` and a
message that says what is wrong, where, and how to fix it. Must never import another forge module
(everything else imports these).
"""

from __future__ import annotations

from tezzeret.errors import TezzeretError


class ForgeError(TezzeretError):
    """Base of the forge's errors. `http_status` is what the API answers with."""

    code = "FORGE_ERROR"
    http_status = 500

    def __init__(self, message: str, *, code: str | None = None, **details: object) -> None:
        super().__init__(message, code=code)
        self.details = details

    def to_dict(self) -> dict[str, object]:
        out = super().to_dict()
        out.update({k: v for k, v in self.details.items() if v is not None})
        return out


class RequestInvalid(ForgeError):
    """The request itself is malformed: bad JSON/protobuf, a missing blueprint, an unknown field."""

    code = "REQUEST_INVALID"
    http_status = 400


class BlueprintInvalid(ForgeError):
    """The blueprint failed static validation; `node` and `field` point at the problem."""

    code = "BLUEPRINT_INVALID"
    http_status = 422


class BlueprintQuarantined(ForgeError):
    """The blueprint failed too often by itself; no automatic path submits it until released."""

    code = "BLUEPRINT_QUARANTINED"
    http_status = 422


class RiskRefused(ForgeError):
    """The request's risk is above what the forge accepts in its current state."""

    code = "RISK_REFUSED"
    http_status = 503


class QueueFull(ForgeError):
    """The queue holds `compilation.max_queue_depth` jobs; retry later or raise the limit."""

    code = "QUEUE_FULL"
    http_status = 503


class IntakeClosed(ForgeError):
    """The forge is draining or stopping and accepts no new work."""

    code = "INTAKE_CLOSED"
    http_status = 503


class StoreUnavailable(ForgeError):
    """Urza (the store) refused or failed a write; nothing was accepted. Retry later."""

    code = "STORE_UNAVAILABLE"
    http_status = 503


class JournalFailed(ForgeError):
    """The WAL could not make the job durable; nothing was accepted. Check the WAL directory."""

    code = "JOURNAL_FAILED"
    # Not a bug of the request: the service cannot make work durable right now (a full disk).
    http_status = 503


class JobNotFound(ForgeError):
    code = "JOB_NOT_FOUND"
    http_status = 404


class ArtifactNotFound(ForgeError):
    code = "ARTIFACT_NOT_FOUND"
    http_status = 404


class BlueprintNotFound(ForgeError):
    code = "BLUEPRINT_NOT_FOUND"
    http_status = 404


class ForgeNotStarted(ForgeError):
    """A method that needs the running service was called before `Forge.start()` or after close."""

    code = "FORGE_NOT_STARTED"
    http_status = 503
