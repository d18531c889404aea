"""Configuration: every variable a component reads is documented in .env.example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from api.config import ApiSettings
from generator.config import GeneratorSettings
from globalmart.settings import PlatformSettings
from globalmart_dagster.settings import DagsterSettings
from launcher.runtime import RuntimeSettings
from streaming.config import StreamingSettings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = [PlatformSettings, RuntimeSettings, GeneratorSettings, StreamingSettings,
            DagsterSettings, ApiSettings]


def _variables(settings: type[BaseSettings]) -> set[str]:
    prefix = settings.model_config.get("env_prefix", "")
    names = set()
    for name, field in settings.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseSettings):
            continue  # nested settings: their own variables are checked on their own
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.add(str(alias.choices[0]).upper())
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            names.add(f"{prefix}{name}".upper())
    return names


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: s.__name__)
def test_every_variable_is_documented(settings: type[BaseSettings]) -> None:
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(),
                                re.M))

    assert _variables(settings) - documented == set()


def test_embedded_defaults_point_at_the_embedded_servers(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    for var in ("GLOBALMART_DATABASE_URL", "GLOBALMART_KAFKA_BOOTSTRAP_SERVERS",
                "GLOBALMART_LAKE_PATH", "GLOBALMART_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GLOBALMART_EMBEDDED_PG_PORT", "6543")

    settings = PlatformSettings()

    assert settings.uses_embedded_postgres and settings.uses_embedded_kafka
    assert settings.db_url == "postgresql://postgres@127.0.0.1:6543/globalmart"
    assert settings.bootstrap_servers == "127.0.0.1:9092"
    assert settings.lake == str(tmp_path / ".globalmart" / "lake")


def test_configured_endpoints_win(monkeypatch) -> None:
    monkeypatch.setenv("GLOBALMART_DATABASE_URL", "postgresql://u:p@db:5432/gm")
    monkeypatch.setenv("GLOBALMART_KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")

    settings = PlatformSettings()

    assert not settings.uses_embedded_postgres and not settings.uses_embedded_kafka
    assert settings.db_url == "postgresql://u:p@db:5432/gm"
    assert settings.bootstrap_servers == "k1:9092,k2:9092"
