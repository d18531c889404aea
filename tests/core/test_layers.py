"""The layers: the core (``globalmart/``) imports no component, the components import no other
component and not the launcher; only the launcher (``launcher/``) sees them all."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPONENTS = ("api", "generator", "streaming", "globalmart_dagster")
LAUNCHER = "launcher"


def imported_packages(package: str, root: Path = ROOT) -> dict[str, set[str]]:
    """Top-level packages each module of ``package`` imports (at any depth of the module)."""
    found: dict[str, set[str]] = {}
    for path in sorted((root / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(root))] = names
    return found


def test_the_core_imports_no_component_and_not_the_launcher():
    forbidden = {*COMPONENTS, LAUNCHER}
    offenders = {module: names & forbidden
                 for module, names in imported_packages("globalmart").items()
                 if names & forbidden}
    assert offenders == {}


@pytest.mark.parametrize("component", COMPONENTS)
def test_a_component_imports_no_other_component_nor_the_launcher(component):
    forbidden = ({*COMPONENTS, LAUNCHER} - {component})
    offenders = {module: names & forbidden
                 for module, names in imported_packages(component).items()
                 if names & forbidden}
    assert offenders == {}


def test_the_check_sees_imports_inside_functions(tmp_path):
    """The rule must be able to fail: a deferred import inside a function counts."""
    (tmp_path / "globalmart").mkdir()
    (tmp_path / "globalmart" / "bad.py").write_text(
        "def f():\n    from streaming.app import serve\n")
    assert imported_packages("globalmart", tmp_path) == {"globalmart/bad.py": {"streaming"}}
