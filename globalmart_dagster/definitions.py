"""The GlobalMart code location: what lives in ``defs/`` (loaded by Dagster's defs-folder
loader: the project layout of ``[tool.dg]`` in pyproject.toml, which ``dg dev`` and ``dg check
defs`` read), the resources wired from the environment (``wiring.py``) and the executor.

The folder is loaded from its module (``ComponentTree.from_module``, what
``load_from_defs_folder`` does once it has found pyproject.toml), so an installed package (the
Docker image), with no pyproject.toml around it, loads the same definitions.

Runs execute in process: one Spark session per run, and two cores shared by everything."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg

import globalmart_dagster.defs as defs_folder
from globalmart_dagster.wiring import build_resources


def build_definitions(resources: dict[str, Any]) -> dg.Definitions:
    """Everything of the code location with these resources (tests pass their own)."""
    return dg.Definitions.merge(
        dg.ComponentTree.from_module(defs_module=defs_folder,
                                     project_root=Path(__file__).parent.parent).build_defs(),
        dg.Definitions(resources=resources, executor=dg.in_process_executor),
    )


@dg.definitions
def defs() -> dg.Definitions:
    """The code location, its resources read from the environment when it loads."""
    return build_definitions(build_resources())
