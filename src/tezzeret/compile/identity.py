"""Artifact identity: `{digest[:16]}-{target}-{tier}-{toolchain[:8]}`, computed without compiling.

Owns the artifact id and the toolchain for a tier. Must stay torch-free to import: the forge
deduplicates on the id before any compile, in a process that never loads torch.
"""

from __future__ import annotations

from tezzeret.compile import target
from tezzeret.compile.tiers import Tier, tier_for
from tezzeret.leyline import pb


def toolchain_for_tier(tier: Tier) -> target.Toolchain:
    return target.toolchain_for(tier.name, tier.version, tier.settings())


def artifact_id(blueprint_digest: str, tier: Tier) -> str:
    toolchain = toolchain_for_tier(tier)
    return f"{blueprint_digest[:16]}-{toolchain.target}-{tier.name}-{toolchain.hash()[:8]}"


def artifact_id_for(ir: pb.BlueprintIR, strategy: int | str) -> str:
    """The id an artifact of `ir` at `strategy` will have on this host; compiles nothing."""
    from tezzeret.blueprint import digest

    return artifact_id(digest(ir), tier_for(strategy))
