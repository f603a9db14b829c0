"""`Strategy`: the one type for a compilation tier's name, and its one parser.

Owns the four tiers' names as the seed spells them (EMERGENCY, FAST, STANDARD, AGGRESSIVE), their
order, the Leyline enum value of each, and `Strategy.parse`, which accepts a `Strategy`, a
`pb.CompilationStrategy` value or a name (`fast`, `FAST`, `STRATEGY_FAST`) and refuses everything
else with `UnknownStrategy`. What each tier compiles lives in `compile.tiers`; this module only
names them. Must never import a stage: config, the sandbox, the store and the forge all use it.
"""

from __future__ import annotations

from enum import Enum
from typing import cast

from tezzeret.errors import TezzeretError
from tezzeret.leyline import leyline_pb2 as pb


class UnknownStrategy(TezzeretError, ValueError):
    """A strategy that is not one of the four tiers."""

    # The stable code clients match on (it predates this module).
    code = "COMPILE_UNKNOWN_STRATEGY"


class Strategy(str, Enum):
    EMERGENCY = "EMERGENCY"
    FAST = "FAST"
    STANDARD = "STANDARD"
    AGGRESSIVE = "AGGRESSIVE"

    @property
    def pb(self) -> pb.CompilationStrategy:
        # The generated stubs type enum fields as the enum class; at runtime values are ints.
        return cast(pb.CompilationStrategy, pb.CompilationStrategy.Value("STRATEGY_" + self.value))

    def down(self) -> Strategy:
        """The tier below (AGGRESSIVE → STANDARD → FAST → EMERGENCY); EMERGENCY stays."""
        order = list(Strategy)
        return order[max(0, order.index(self) - 1)]

    @classmethod
    def parse(cls, value: Strategy | str | int) -> Strategy:
        if isinstance(value, Strategy):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            for member in cls:
                if member.pb == value:
                    return member
        elif isinstance(value, str):
            name = value.strip().upper().removeprefix("STRATEGY_")
            if name in cls.__members__:
                return cls[name]
        raise UnknownStrategy(f"strategy {value!r} is not a tier; use one of: {', '.join(m.value for m in cls)}")

    def __str__(self) -> str:
        return self.value
