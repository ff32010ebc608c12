"""Scaffolding of this repository, not part of the example: the example plugin is a project of
its own, and its tests need it installed. The repository's test run therefore does not collect
them; tests/contract/test_contract.py installs the plugin and runs them with the plugin's own pytest
configuration, whose root is this folder."""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if config.rootpath != Path(__file__).parent:
        return True
    return None
