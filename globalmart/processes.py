"""Processes ``globalmart up`` starts, and what is left of them after it died.

Each process runs in a session (process group) of its own, gets SIGTERM when ``up`` dies (Linux
parent-death signal), and is recorded in ``<home>/run/<name>.pid``. A later ``up`` on the same
home stops whatever of an earlier one's groups still runs: only processes that are provably
ours (their environment names this home, or their command line does), so a recycled pid is
never touched."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_STOP_TIMEOUT_S = 15.0


def die_with_parent() -> None:
    """``preexec_fn`` of a child: SIGTERM it when the process that started it dies."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def run_dir(home: Path) -> Path:
    return home / "run"


def record(home: Path, name: str, pid: int) -> None:
    """Remember the process group of a child (its leader's pid)."""
    run_dir(home).mkdir(parents=True, exist_ok=True)
    (run_dir(home) / f"{name}.pid").write_text(f"{pid}\n")


def forget(home: Path, name: str) -> None:
    """The child stopped: its record goes."""
    with contextlib.suppress(FileNotFoundError):
        (run_dir(home) / f"{name}.pid").unlink()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # gone meanwhile, or not ours to read
        return b""


def _group_of(pid: str) -> int | None:
    stat = _read(Path("/proc") / pid / "stat")
    if not stat:
        return None
    # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses
    return int(stat[stat.rindex(b")") + 2:].split()[2])


def ours(pid: int, home: Path) -> bool:
    """Whether a live process belongs to the platform of ``home``."""
    marker = str(home).encode()
    proc = Path("/proc") / str(pid)
    environ = _read(proc / "environ").split(b"\0")
    return (b"GLOBALMART_HOME=" + marker in environ) or marker in _read(proc / "cmdline")


def members(group: int, home: Path) -> list[int]:
    """The live processes of a process group that belong to the platform of ``home``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _group_of(entry) == group and ours(int(entry), home):
            found.append(int(entry))
    return found


def stop_leftovers(home: Path, say: Callable[[str], None]) -> list[str]:
    """Stop the process groups an earlier ``up`` on ``home`` recorded and left running
    (SIGTERM, then SIGKILL after a grace period); return their names."""
    stopped = []
    for path in sorted(run_dir(home).glob("*.pid")):
        name = path.stem
        try:
            group = int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            group = 0
        left = members(group, home) if group > 0 else []
        if left:
            say(f"stopping {name} (process group {group}), left running by an earlier "
                "`globalmart up` that did not stop cleanly ...")
            _terminate(left, home)
            stopped.append(name)
        path.unlink(missing_ok=True)
    return stopped


def _terminate(pids: list[int], home: Path) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + _STOP_TIMEOUT_S
        while time.monotonic() < deadline:
            pids = [p for p in pids if Path(f"/proc/{p}").exists() and ours(p, home)]
            if not pids:
                return
            time.sleep(0.1)  # polling interval of a condition with a deadline
