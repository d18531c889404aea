"""Streaming settings: defaults, environment, and a misspelt knob refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from streaming.config import StreamingSettings


def test_settings_from_environment_and_unknown_ones_refused(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("GLOBALMART_DATABASE_URL=postgresql://x/y\nOTHER=1\n")
    monkeypatch.setenv("GLOBALMART_STREAM_TRIGGER_INTERVAL", "5 seconds")
    settings = StreamingSettings()
    assert settings.trigger_interval == "5 seconds"
    assert settings.master == "local[*]"
    assert settings.checkpoints("/lake/") == "/lake/checkpoints"
    monkeypatch.setenv("GLOBALMART_STREAM_TRIGER_INTERVAL", "5 seconds")
    with pytest.raises(ValidationError, match="GLOBALMART_STREAM_TRIGER_INTERVAL"):
        StreamingSettings()


@pytest.mark.parametrize(("master", "setting", "executors"), [
    ("local[*]", "auto", False), ("local[2]", "auto", False),
    ("spark://master:7077", "auto", True), ("k8s://https://api:6443", "auto", True),
    ("local[*]", "executors", True), ("spark://master:7077", "driver", False)])
def test_where_records_are_validated(monkeypatch, tmp_path, master, setting, executors) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GLOBALMART_STREAM_MASTER", master)
    monkeypatch.setenv("GLOBALMART_STREAM_VALIDATE_ON", setting)
    assert StreamingSettings().validates_on_executors() is executors
