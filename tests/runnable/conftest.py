"""Fixtures of the runnable pipeline tests (the MinIO server comes from tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .harness import Project


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """A folder holding the example and test pipelines, to run runnable pipelines in."""
    return Project(tmp_path / "project")
