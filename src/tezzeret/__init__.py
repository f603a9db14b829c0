"""Tezzeret: the compilation forge of the Esper morphogenetic-training platform.

A blueprint travels intake → validate → dedup/cache → journal → schedule → compile (sandbox) →
verify → sign → store → commit → notify → load. Each stage is one sub-package, and imports point
forward along that path only (see ARCHITECTURE.md).
"""

__version__ = "0.1.0"
