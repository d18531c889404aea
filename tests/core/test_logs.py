"""One log format: JSON lines with component, batch id and Dagster run id."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import dagster as dg
import yaml

from globalmart.logs import JsonFormatter, bound

ROOT = Path(__file__).resolve().parents[2]


def test_a_process_logs_json_lines_with_its_component():
    code = ("import logging; from globalmart.logs import configure, bound; configure('stream'); "
            "import contextlib\n"
            "with bound(batch_id=41, query='realtime'):\n"
            "    logging.getLogger('streaming.sinks').warning('batch %d slow', 41)\n"
            "logging.getLogger('x').info('after')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={"GLOBALMART_LOG_FORMAT": "json", "PATH": ""}, check=True)
    first, second = (json.loads(line) for line in result.stderr.splitlines())
    assert first["component"] == "stream" and first["level"] == "WARNING"
    assert (first["batch_id"], first["query"], first["message"]) == (41, "realtime",
                                                                     "batch 41 slow")
    assert "batch_id" not in second  # the binding ended with its block


def test_dagster_run_logs_carry_the_run_id(tmp_path):
    """dagster.yaml's python_logs on a real materialization (its stderr handler swapped for a
    file to read back)."""
    config = yaml.safe_load((ROOT / "dagster.yaml").read_text())["python_logs"]
    handlers = config["dagster_handler_config"]["handlers"]
    path = tmp_path / "run.log"
    handlers["json"] = {**handlers["json"], "class": "logging.FileHandler",
                        "filename": str(path)}

    @dg.asset
    def tiny(context) -> int:  # noqa: ANN001 - Dagster reads the annotation at definition
        """An asset that logs."""
        context.log.info("building tiny")
        return 1

    with dg.instance_for_test(overrides={"python_logs": config}) as instance:
        result = dg.materialize([tiny], instance=instance)
    assert result.success
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    mine = [e for e in entries if e["message"].endswith("building tiny")]
    assert mine and mine[0]["run_id"] == result.run_id and mine[0]["component"] == "dagster"


def test_a_record_without_context_is_plain(caplog):
    record = logging.LogRecord("x", logging.ERROR, "", 0, "boom %s", ("!",), None)
    with bound(batch_id=1):
        pass
    entry = json.loads(JsonFormatter("api").format(record))
    assert entry == {**entry, "component": "api", "message": "boom !", "level": "ERROR"}
    assert "batch_id" not in entry
