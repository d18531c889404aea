"""The JVM parts of the platform: jars that ``make install`` fetched from Maven Central
(``mvn -f jars/pom.xml package`` copies each module's runtime jars to ``jars/lib/<module>/``),
and the ``java`` that runs them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from globalmart.settings import PlatformSettings

JARS_SOURCE = Path(__file__).resolve().parent.parent / "jars"
KAFKA_BROKER = "kafka"
SPARK_KAFKA_CONNECTOR = "spark-kafka"


class MissingJarsError(RuntimeError):
    """The jars of a module were not fetched (``make install`` was not run)."""


def jars(module: str) -> list[Path]:
    """The jars of ``module`` (``kafka`` or ``spark-kafka``), sorted; a clear error when absent."""
    root = PlatformSettings().jars_dir or JARS_SOURCE / "lib"
    found = sorted((root / module).glob("*.jar"))
    if not found:
        raise MissingJarsError(
            f"no jars in {root / module}: run `make install` (it runs `mvn -f jars/pom.xml "
            "package`, which needs Maven and Java 17), or set GLOBALMART_JARS_DIR to a folder "
            f"holding {module}/*.jar")
    return found


def java() -> str:
    """The ``java`` executable: $JAVA_HOME/bin/java, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    candidate = Path(home) / "bin" / "java" if home else None
    if candidate is not None and candidate.exists():
        return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise MissingJarsError("no `java` on PATH and no JAVA_HOME: install Java 17")
    return found
