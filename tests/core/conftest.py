"""Core tests: make ``core_helpers`` importable in any import mode."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
