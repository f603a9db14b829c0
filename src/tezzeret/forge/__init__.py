"""Stage: forge — Tezzeret as a running service (the seed's PollingEngine, PipelineManager and the
forge's lifecycle).

Owns: the `Forge` (`service.Forge`), which wires every other stage along the path of one blueprint
(intake → validate → dedup/cache → journal → schedule → sandbox → sign → store → commit → notify),
plus Urza polling, idle recompilation, the emergency path's forge side, health, the audit log and
the `serve` / `submit` / `status` / `artifacts` / `forge` commands. Nothing imports the forge but
the API and the CLI; it must never compile in its own process.
"""
