"""The distributed runtime's compose file and image (no Docker engine runs here, so they are
checked statically): every service is there, healthy-checked, and takes secrets only from .env;
Kafka, Spark and the connector jars are the versions jars/pom.xml and pyproject.toml pin, the
ones `make install` fetches and the tests run."""

from __future__ import annotations

import posixpath
import re
import shlex
import tomllib
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from globalmart.settings import PlatformSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES = COMPOSE["services"]
DOCKERFILE_TEXT = (ROOT / "docker" / "Dockerfile").read_text()
POM = ROOT / "jars" / "pom.xml"
_POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


def pom_property(name: str) -> str:
    value = ET.parse(POM).getroot().findtext(f"m:properties/m:{name}", namespaces=_POM_NS)
    assert value and value.strip(), f"no <{name}> in {POM}"
    return value.strip()


def pom_modules() -> list[str]:
    modules = ET.parse(POM).getroot().findall("m:modules/m:module", namespaces=_POM_NS)
    return [module.text.strip() for module in modules if module.text]


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def dockerfile_stages(text: str = DOCKERFILE_TEXT) -> list[Stage]:
    """The build stages: comment lines dropped, continuation lines joined, as Docker reads it."""
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        if line.strip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        if not line.strip():
            continue
        keyword, _, args = line.strip().partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image=words[0], name=name))
        else:
            assert stages, f"{keyword} before FROM in docker/Dockerfile"
            stages[-1].instructions.append((keyword, args))
    return stages


def env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in stage.args("ENV"):
        for word in shlex.split(args):
            key, _, value = word.partition("=")
            env[key] = value
    return env


def test_the_distributed_runtime_has_every_service() -> None:
    expected = {"kafka", "spark-master", "spark-worker-1", "spark-worker-2", "postgres", "mongodb",
                "redis", "dagster-webserver", "dagster-daemon", "dagster-code", "api", "grafana",
                "stream", "generator", "init"}
    assert expected <= set(SERVICES)


def test_long_running_services_have_health_checks() -> None:
    one_shot = {name for name, svc in SERVICES.items() if svc.get("restart") == "no"}
    missing = [name for name, svc in SERVICES.items()
               if name not in one_shot and "healthcheck" not in svc]
    assert missing == []


def test_no_retired_images_and_no_zookeeper() -> None:
    images = [svc.get("image", "") for svc in SERVICES.values()]
    images += [stage.image for stage in dockerfile_stages()]
    assert not [i for i in images if "bitnami" in i or "zookeeper" in i]
    assert not [name for name in SERVICES["kafka"].get("environment", {}) if "ZOOKEEPER" in name]


def test_secrets_come_from_the_environment_and_are_documented() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for line in text.splitlines():
        if re.search(r"PASSWORD\s*:", line):
            assert "${" in line, f"literal secret in compose: {line.strip()}"
    required = set(re.findall(r"\$\{([A-Z_]+):\?", text))
    documented = set(re.findall(r"^#?\s*([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert required and required <= documented


def test_dockerfile_copies_only_what_exists() -> None:
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    # COPY --from=<stage> copies from a build stage, not from the source tree
    for source in re.findall(r"^COPY (?!--from=)(\S+(?: \S+)*) \S+$", dockerfile, re.M):
        for path in source.split():
            assert (ROOT / path).exists(), path


# --- the same Kafka, Spark and connector jars as `make install` and the tests -----------------

def test_the_compose_broker_is_the_pom_kafka() -> None:
    assert SERVICES["kafka"]["image"] == f"apache/kafka:{pom_property('kafka.version')}"


def test_the_pyspark_pin_is_the_pom_spark() -> None:
    project = pyproject()["project"]
    requirements = [Requirement(line) for line in project["dependencies"]]
    for extra in project.get("optional-dependencies", {}).values():
        requirements += [Requirement(line) for line in extra]
    pins = [str(req.specifier) for req in requirements if req.name.lower() == "pyspark"]
    assert pins == [f"=={pom_property('spark.version')}"]


def test_the_compose_broker_runs_kraft_on_a_volume_with_bounded_retention() -> None:
    kafka = SERVICES["kafka"]
    env = {key: str(value) for key, value in kafka["environment"].items()}
    assert "controller" in env["KAFKA_PROCESS_ROLES"].split(",")
    assert "broker" in env["KAFKA_PROCESS_ROLES"].split(",")
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert f"{controller}://" in env["KAFKA_LISTENERS"]
    quorum = {"KAFKA_CONTROLLER_QUORUM_VOTERS", "KAFKA_CONTROLLER_QUORUM_BOOTSTRAP_SERVERS"}
    assert quorum & set(env)
    assert env["KAFKA_NUM_PARTITIONS"] == "3"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    # the embedded broker's retention (7 days, 1 GiB per partition), in both runtimes
    embedded = {name: str(spec.default) for name, spec in PlatformSettings.model_fields.items()}
    assert env["KAFKA_LOG_RETENTION_HOURS"] == embedded["embedded_kafka_retention_hours"]
    assert env["KAFKA_LOG_RETENTION_BYTES"] == embedded["embedded_kafka_retention_bytes"]
    assert int(env["KAFKA_LOG_SEGMENT_BYTES"]) < int(env["KAFKA_LOG_RETENTION_BYTES"])
    # the log is on a named volume (the image's default, /tmp/kraft-combined-logs, is not)
    mounts = dict(volume.split(":")[:2][::-1] for volume in kafka["volumes"])
    assert mounts.get(env["KAFKA_LOG_DIRS"]) in COMPOSE["volumes"]


def test_the_image_builds_the_jars_from_the_pom_and_points_at_them() -> None:
    stages = dockerfile_stages()
    final = stages[-1]
    maven = [stage for stage in stages if stage.image.split(":")[0] == "maven"]
    assert len(maven) == 1, "one maven stage fetches the jars"
    jars = maven[0]
    assert jars.name, "the maven stage is named (FROM maven:... AS <name>)"
    # the pom and every module's pom are in the stage, and `make install`'s command runs there
    copied = {word for args in jars.args("COPY") for word in args.split()[:-1]}
    assert {"jars/pom.xml", *(f"jars/{module}/pom.xml" for module in pom_modules())} <= copied
    assert any(re.search(r"\bmvn\b.*-f jars/pom\.xml\b.*\bpackage\b", run)
               for run in jars.args("RUN"))
    # the final image takes jars/lib from that stage, and GLOBALMART_JARS_DIR points at it
    workdir = jars.args("WORKDIR")[-1] if jars.args("WORKDIR") else "/"
    built = posixpath.join(workdir, "jars/lib")
    targets = [args.split()[-1] for args in final.args("COPY")
               if args.split()[0] == f"--from={jars.name}" and args.split()[1].rstrip("/") == built]
    assert targets, f"the final stage copies {built} from the {jars.name} stage"
    assert env_of(final).get("GLOBALMART_JARS_DIR", "").rstrip("/") in {
        target.rstrip("/") for target in targets}


def test_the_image_installs_the_project_with_its_pins_on_a_supported_python() -> None:
    final = dockerfile_stages()[-1]
    repository, _, tag = final.image.partition(":")
    assert repository == "python"
    python = re.match(r"\d+\.\d+", tag)
    assert python, f"the final image names its Python version: {final.image}"
    assert python.group() in SpecifierSet(pyproject()["project"]["requires-python"])
    installs = [shlex.split(run) for run in final.args("RUN") if "pip install" in run]
    assert [words for words in installs if "." in words], "the image installs `.` (pyproject)"
    # no package pinned beside pyproject's (pyspark would then differ from spark.version)
    assert not [words for words in installs if any("==" in word for word in words)]


_VERSION = re.compile(r"\d+\.\d+\.\d+")
_PRODUCT = re.compile(r"spark|kafka", re.I)


def version_literals(text: str) -> list[tuple[str, str, str]]:
    """(product, version, line) for every x.y.z in a line naming Kafka or Spark: the product
    named by the word holding the version (spark before kafka: spark-sql-kafka is Spark's), else
    the last one named before it on the line."""
    found = []
    for line in text.splitlines():
        for match in _VERSION.finditer(line):
            start = max(line.rfind(c, 0, match.start()) for c in " \t\"'=,[") + 1
            end = min([i for i in (line.find(c, match.end()) for c in " \t\"',]") if i >= 0],
                      default=len(line))
            word = line[start:end].lower()
            if "spark" in word:
                found.append(("spark", match.group(), line.strip()))
            elif "kafka" in word:
                found.append(("kafka", match.group(), line.strip()))
            elif named := _PRODUCT.findall(line[:match.start()]):
                found.append((named[-1].lower(), match.group(), line.strip()))
    return found


def test_no_other_kafka_or_spark_version_in_compose_or_image() -> None:
    expected = {"kafka": pom_property("kafka.version"), "spark": pom_property("spark.version")}
    drifted = [(product, version, line)
               for text in (COMPOSE_TEXT, DOCKERFILE_TEXT)
               for product, version, line in version_literals(text)
               if version != expected[product]]
    assert drifted == []
    images = [svc["image"] for svc in SERVICES.values() if "image" in svc]
    images += [stage.image for stage in dockerfile_stages()]
    for image in images:
        repository, _, tag = image.partition(":")
        if "kafka" in repository.lower():
            assert image == f"apache/kafka:{expected['kafka']}"
        if "spark" in repository.lower():
            assert repository == "apache/spark"
            assert tag == expected["spark"] or tag.startswith(f"{expected['spark']}-"), image


def test_the_drift_checks_see_what_they_guard() -> None:
    """The literal scan recognises the forms a stale version takes."""
    assert version_literals("    image: apache/kafka:3.9.1") == [
        ("kafka", "3.9.1", "image: apache/kafka:3.9.1")]
    assert [v[:2] for v in version_literals("ARG SPARK_VERSION=3.5.1")] == [("spark", "3.5.1")]
    assert [v[:2] for v in version_literals("  KAFKA_VERSION: 3.9.1")] == [("kafka", "3.9.1")]
    assert [v[:2] for v in version_literals(
        "RUN curl -O https://x/kafka_2.13-3.9.1.tgz")] == [("kafka", "3.9.1")]
    assert [v[:2] for v in version_literals(
        "--packages org.apache.spark:spark-sql-kafka-0-10_2.13:3.5.1")] == [("spark", "3.5.1")]
    assert [v[:2] for v in version_literals("RUN pip install pyspark==3.5.1")] == [
        ("spark", "3.5.1")]
    assert version_literals("FROM python:3.11-slim-bookworm") == []
