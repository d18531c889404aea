"""Lake locations: a path and each spelling of a ``file:`` URL name one local directory for
pyarrow and for Spark; a relative path is made absolute once; other URLs are left alone."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pa_fs
import pytest

from globalmart.lake import absolute, filesystem, is_url, local_path, spark_url
from globalmart.settings import PlatformSettings
from streaming.config import StreamingSettings
from streaming.sinks.raw import write_raw_file


@pytest.mark.parametrize("location", ["/data/lake", "file:/data/lake", "file:///data/lake",
                                      "file://localhost/data/lake", "file:///data/lake/"])
def test_every_spelling_of_a_local_directory_names_it(location: str) -> None:
    assert local_path(location) == Path("/data/lake")
    assert spark_url(location) == "file:///data/lake"
    fs, path = filesystem(location)
    assert isinstance(fs, pa_fs.LocalFileSystem) and path == "/data/lake"


def test_a_relative_path_is_taken_from_the_working_directory_once(monkeypatch,
                                                                  tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GLOBALMART_STREAM_CHECKPOINT_ROOT", raising=False)
    assert absolute("lake") == str(tmp_path / "lake")
    assert spark_url("lake/raw") == f"file://{tmp_path}/lake/raw"
    settings = PlatformSettings(lake_path="lake")
    assert settings.lake == str(tmp_path / "lake")
    assert StreamingSettings().checkpoints(settings.lake) == str(tmp_path / "lake" / "checkpoints")
    assert StreamingSettings(checkpoint_root="cp").checkpoints(settings.lake) == str(
        tmp_path / "cp")


def test_urls_of_other_schemes_are_left_to_their_filesystem() -> None:
    for url in ("s3://bucket/lake", "hdfs://namenode:8020/lake", "gs://bucket/lake"):
        assert is_url(url) and local_path(url) is None
        assert spark_url(url) == url and absolute(url) == url
    assert PlatformSettings(lake_path="s3://bucket/lake").lake == "s3://bucket/lake"


@pytest.mark.parametrize("location", ["file://otherhost/data/lake", "file:data/lake"])
def test_a_file_url_that_names_no_local_absolute_path_is_refused(location: str) -> None:
    with pytest.raises(ValueError, match="file:"):
        local_path(location)


@pytest.mark.parametrize("spelling", ["file:{}", "file://{}", "file://localhost{}"])
def test_the_raw_layer_lands_in_the_directory_a_file_url_names(spelling: str, monkeypatch,
                                                                tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    lake = tmp_path / "lake"
    table = pa.table({"event_id": ["a"]})
    written = write_raw_file(spelling.format(lake), "transactions", date(2026, 3, 1), 0, 0,
                             table)
    assert written == f"{lake}/raw/transactions/event_date=2026-03-01/part-0000000000-0000000000" \
                      ".parquet"
    assert Path(written).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lake"]  # nothing under ./file:
