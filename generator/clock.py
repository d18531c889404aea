"""The simulation's clock and rates: what to simulate (:class:`Params`), simulated time in
integer microseconds since the epoch, the traffic shape of the history (hour of day × day of
week) and the length of each window the simulation emits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

DAY_US = 86_400_000_000
BUCKET_US = 100_000  # width of a calendar bucket
LIVE_WINDOW_US = 200_000  # live events leave at most this long after their event_time
HISTORY_WINDOW_EVENTS = 5_000  # history windows hold about this many events
MAX_HISTORY_WINDOW_US = 300_000_000

# Traffic shape of the history: relative volume per UTC hour and per weekday (Monday first).
HOURLY = (0.35, 0.25, 0.2, 0.18, 0.2, 0.3, 0.5, 0.75, 0.95, 1.05, 1.1, 1.15,
          1.2, 1.15, 1.1, 1.1, 1.15, 1.25, 1.4, 1.55, 1.6, 1.45, 1.1, 0.7)
WEEKLY = (0.95, 0.92, 0.95, 1.0, 1.05, 1.12, 1.08)
_SHAPE_NORM = (sum(HOURLY) / 24) * (sum(WEEKLY) / 7)


@dataclass(frozen=True)
class Params:
    """What to simulate: the clock's start, where the history ends and the rates."""

    start_us: int
    history_end_us: int  # the history (shaped, history_rate) runs from start_us to here
    rate: float  # live events per second, from history_end_us on
    history_rate: float = 40.0
    anomaly_rate: float = 0.01
    malformed_rate: float = 0.0
    resend_rate: float = 0.0


def iso_time(t_us: int) -> str:
    """Microseconds since the epoch as ISO-8601 UTC with microseconds (``…T12:00:00.000001Z``)."""
    seconds, micros = divmod(t_us, 1_000_000)
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%dT%H:%M:%S}.{micros:06d}Z"


def to_us(moment: datetime) -> int:
    """A timezone-aware datetime as microseconds since the epoch."""
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def traffic_shape(t_us: int) -> float:
    """Relative traffic at a moment (mean 1 over a week): hour of day × day of week."""
    day, in_day = divmod(t_us, DAY_US)
    return HOURLY[in_day // 3_600_000_000] * WEEKLY[(day + 3) % 7] / _SHAPE_NORM


class Timeline:
    """The rates over simulated time: the shaped history, then the live rate."""

    def __init__(self, params: Params) -> None:
        self.params = params
        self.history_end = params.history_end_us - params.history_end_us % BUCKET_US

    def rate_at(self, t_us: int) -> float:
        """Target events per second at simulated time ``t_us``."""
        if t_us < self.history_end:
            return self.params.history_rate * traffic_shape(t_us)
        return self.params.rate

    def window_length(self, t_us: int) -> int:
        """The length of the window starting at ``t_us``: short when live, about
        ``HISTORY_WINDOW_EVENTS`` events in the history, never across the history's end."""
        if t_us >= self.history_end:
            return LIVE_WINDOW_US
        length = int(HISTORY_WINDOW_EVENTS / self.rate_at(t_us) * 1e6)
        length = max(2 * BUCKET_US, min(MAX_HISTORY_WINDOW_US, length))
        length -= length % BUCKET_US
        return min(length, self.history_end - t_us)
