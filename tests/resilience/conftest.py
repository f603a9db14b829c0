"""Fixtures for the resilience tests: a manual clock, settings in a temp state dir, the breakers."""

from __future__ import annotations

from pathlib import Path

import pytest
from settings import settings_for

from tezzeret.config import Settings
from tezzeret.resilience import BreakerRegistry, ConservativeModeController, ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # The seed's concurrency as configured, on any host: these tests are about what conservative
    # mode does to it, not about the cores a host leaves to training (see test_config).
    return settings_for(tmp_path, sandbox={"training_reserved_cores": 0})


@pytest.fixture
def breakers(settings: Settings, clock: ManualClock) -> BreakerRegistry:
    return BreakerRegistry.from_settings(settings, clock)


@pytest.fixture
def controller(settings: Settings, breakers: BreakerRegistry, clock: ManualClock) -> ConservativeModeController:
    return ConservativeModeController(settings, breakers, clock)
