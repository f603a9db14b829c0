"""Typed errors of the blueprint stage.

Owns `BlueprintRejected`, the one exception static validation lets out, and the list of its stable
codes. It must never import torch or any other stage: callers that only want to catch or report a
rejection should not pay for the compiler stack.
"""

from __future__ import annotations

from tezzeret.errors import TezzeretError

# Stable, machine-readable rejection codes (callers and the hostile corpus key on these).
CODES: frozenset[str] = frozenset(
    {
        "MALFORMED",  # not parseable as a BlueprintIR (JSON or protobuf), or wrong field types
        "NOT_CANONICAL",  # protobuf bytes whose decode -> re-encode differs
        "TOO_LARGE",  # the serialized form is over max_json_bytes / max_proto_bytes
        "TOO_DEEP",  # JSON nesting over max_json_depth
        "BAD_SCHEMA_VERSION",
        "STRING_TOO_LONG",
        "BAD_NAME",
        "BAD_DTYPE",
        "BAD_SHAPE",
        "BAD_ATTR",
        "BAD_METADATA",
        "UNKNOWN_OP",
        "WRONG_ARITY",
        "DUPLICATE_NAME",
        "DANGLING_INPUT",
        "CYCLE",
        "UNREACHABLE_OUTPUT",
        "UNUSED_NODE",
        "NO_OUTPUTS",
        "SHAPE_MISMATCH",
        "TOO_MANY_NODES",
        "TOO_MANY_INPUTS",
        "TOO_MANY_OUTPUTS",
        "TOO_MANY_PARAMS",
        "TOO_MANY_FLOPS",
        "TOO_MUCH_MEMORY",
        "QUARANTINED",
        "INTERNAL",  # a validator bug: never expected; tests assert it does not occur
    }
)


class BlueprintRejected(TezzeretError):
    """A BlueprintIR failed static validation.

    `code` is one of `CODES`; `node` names the offending node (or input/output) when there is one;
    `field` is the IR field path (e.g. `nodes[3].attrs.out_features`). The message says what is
    wrong and how a Karn engineer can fix it.
    """

    code = "MALFORMED"

    def __init__(
        self,
        code: str,
        message: str,
        *,
        node: str | None = None,
        field: str | None = None,
        source: str | None = None,
    ) -> None:
        if code not in CODES:
            # A typo in a code would silently break every caller that keys on it.
            raise ValueError(f"unknown BlueprintRejected code {code!r}")
        self.node = node
        self.field = field
        self.source = source
        self.detail = message
        where = ", ".join(
            part
            for part in (
                f"file {source}" if source else "",
                f"node {node!r}" if node else "",
                f"field {field}" if field else "",
            )
            if part
        )
        super().__init__(f"[{code}] {message}" + (f" ({where})" if where else ""), code=code)

    def with_source(self, source: str) -> BlueprintRejected:
        """The same rejection, naming the file or request it came from."""
        return BlueprintRejected(
            self.code, self.detail, node=self.node, field=self.field, source=source
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "code": self.code,
            "message": self.detail,
            "node": self.node,
            "field": self.field,
            "source": self.source,
        }
