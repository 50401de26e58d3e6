"""Where things are, for tests, benchmarks and scripts: one place instead of
``Path(__file__).parents[N]`` in every file."""

from pathlib import Path

SUPPORT = Path(__file__).resolve().parent
TESTS = SUPPORT.parent
REPO = TESTS.parent
PROGRAMS = SUPPORT / "programs"
FIXTURES = SUPPORT / "fixtures"
GOLDEN = SUPPORT / "golden"
