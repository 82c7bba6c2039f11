"""Seeded test session: every test starts from the same torch / numpy / random state."""
import os
import random

import numpy as np
import pytest
import torch

try:
    from hypothesis import settings

    # CI machines are 2 noisy cores: no deadlines, a fixed example budget, reproducible derandomized runs in CI.
    settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True)
    settings.register_profile("dev", max_examples=25, deadline=None)
    settings.load_profile("ci" if os.environ.get("CI") else "dev")
except ImportError:  # pragma: no cover
    pass


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda_only" in item.keywords:
            item.add_marker(skip)
