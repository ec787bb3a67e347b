"""Shared test fixtures: tiny models and data built in memory; CPU only, no network."""

from __future__ import annotations

import pytest
import torch

# Several test processes may share 2 cores; tiny models run as fast on one thread.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
