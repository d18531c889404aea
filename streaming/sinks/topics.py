"""Kafka topics the sinks produce to (dead letters, alerts): messages are flushed before the
batch's transaction commits, so a replayed batch may repeat a message but never loses one."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any


class TopicWriter:
    """Produces messages asynchronously and flushes them, raising if any was not delivered."""

    def __init__(self, bootstrap_servers: str, timeout: float = 30.0) -> None:
        from confluent_kafka import Producer

        self._producer: Any = Producer({"bootstrap.servers": bootstrap_servers,
                                        "linger.ms": 5, "acks": "all"})
        self._timeout = timeout
        self._failures: list[str] = []
        self._lock = threading.Lock()

    def _delivered(self, err, message) -> None:
        if err is not None:
            self._failures.append(f"{message.topic()}: {err}")

    def close(self) -> None:
        """Flush what is pending and release the producer."""
        with self._lock:
            if self._producer is not None:
                self._producer.flush(self._timeout)
                self._producer = None

    def send_all(self, topic: str, messages: Iterable[tuple[str, str]]) -> int:
        """Produce ``(key, value)`` messages to ``topic`` and wait until all are delivered."""
        with self._lock:
            if self._producer is None:
                raise RuntimeError("the topic writer is closed")
            self._failures.clear()
            count = 0
            for key, value in messages:
                while True:
                    try:
                        self._producer.produce(topic, value=value.encode(), key=key.encode(),
                                               on_delivery=self._delivered)
                        break
                    except BufferError:
                        self._producer.poll(0.05)
                count += 1
            if count:
                left = self._producer.flush(self._timeout)
                if left:
                    raise RuntimeError(f"{left} messages to {topic} not delivered within "
                                       f"{self._timeout:.0f} s")
                if self._failures:
                    raise RuntimeError(f"delivery to {topic} failed: {self._failures[:3]}")
            return count
