"""Fixtures of the Grafana tests: the dashboards as generated and as committed, and a database
holding the serving dataset (shared with the API tests)."""

from __future__ import annotations

import importlib.util
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
PROVISIONING = REPO / "grafana" / "provisioning"


def load_module(name: str, path: Path) -> ModuleType:
    """Import a file that is not part of an installed package."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def build_module() -> ModuleType:
    """grafana/build.py, the generator of the dashboards."""
    return load_module("globalmart_grafana_build", REPO / "grafana" / "build.py")


@pytest.fixture(scope="session")
def dashboards() -> dict[str, dict]:
    """Every committed dashboard JSON, by file name."""
    files = sorted((PROVISIONING / "dashboards" / "json").glob("*.json"))
    assert files, "no dashboards provisioned"
    return {path.name: json.loads(path.read_text()) for path in files}


@pytest.fixture(scope="session")
def grafana_db(make_database) -> str:
    """A migrated database loaded with the serving dataset."""
    dataset = load_module("globalmart_serving_dataset", REPO / "tests" / "api" / "dataset.py")
    url = make_database()
    dataset.load(url, dataset.build(datetime.now(UTC)))
    return url
