"""Fixtures of the pipeline tests."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for `import pipeline_helpers` in any import mode

from pipeline_helpers import DATA  # noqa: E402


@pytest.fixture(scope="session")
def bad_expected() -> dict[int, str]:
    return {int(k): v for k, v in json.loads((DATA / "bad.expected.json").read_text()).items()}
