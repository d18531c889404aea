"""Locations in the lake (its root, the raw layer, the stream's checkpoints): a local path or a
URL, read by two kinds of clients that must agree on what it names.

- pyarrow, in one process (the stream's raw-layer writer, Dagster's sensors): :func:`filesystem`.
- Spark, on the driver *and* on every executor, each with its own working directory, in a
  cluster where a bare path means ``fs.defaultFS`` (HDFS on many clusters):
  :func:`spark_url` hands Spark a URL, ``file:///abs/path`` for a local directory.

A ``file:`` URL is read as Hadoop reads it: ``file:/x``, ``file:///x`` and ``file://localhost/x``
all name ``/x``, the path taken literally (no percent-decoding). A relative path is made
absolute once, in the process that reads the setting (:func:`absolute`), so a driver, its
executors and the other components never resolve it against different directories.
"""

from __future__ import annotations

import re
from pathlib import Path

from pyarrow import fs as pa_fs

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/")
_LOCAL_HOSTS = ("", "localhost")


def is_url(location: str) -> bool:
    """Whether ``location`` is a URL (``scheme:/…``) rather than a path."""
    return bool(_URL.match(location))


def local_path(location: str) -> Path | None:
    """The local directory ``location`` names (absolute): a path, or a ``file:`` URL; None for
    a URL of another scheme (``s3://…``). A ``file:`` URL of another host, or a relative one,
    is an error."""
    if location.startswith("file:"):
        rest = location.removeprefix("file:")
        if rest.startswith("//"):
            host, slash, path = rest[2:].partition("/")
            if host not in _LOCAL_HOSTS:
                raise ValueError(f"{location!r} names a directory on host {host!r}, not a "
                                 "local one: use a path every process can reach, or a URL of "
                                 "a shared filesystem")
            rest = slash + path
        if not rest.startswith("/"):
            raise ValueError(f"{location!r}: a file: URL needs an absolute path (file:///abs)")
        return Path(rest)
    if is_url(location):
        return None
    return Path(location).expanduser().resolve()


def absolute(location: str) -> str:
    """``location`` with a relative path made absolute (against this process's working
    directory); URLs unchanged."""
    local = local_path(location) if not is_url(location) else None
    return str(local) if local is not None else location


def spark_url(location: str) -> str:
    """``location`` as the URL to give Spark: ``file:///abs/path`` for a local directory (so
    neither ``fs.defaultFS`` nor an executor's working directory changes what it names); other
    URLs unchanged."""
    local = local_path(location)
    return location if local is None else f"file://{local.as_posix()}"


def filesystem(location: str) -> tuple[pa_fs.FileSystem, str]:
    """The pyarrow filesystem of ``location`` and the path within it: the local one for a path
    or a ``file:`` URL, else the one the URL names (``s3://…``)."""
    local = local_path(location)
    if local is None:
        return pa_fs.FileSystem.from_uri(location)
    return pa_fs.LocalFileSystem(), local.as_posix()
