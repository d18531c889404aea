"""The Kafka side of the generator: an asynchronous producer that never waits per message.

Messages are handed to librdkafka (``produce``), which batches them per partition (linger,
batch size) and compresses them; a delivery callback counts every acknowledgement and every
failure. When librdkafka's queue is full, ``produce`` raises ``BufferError``: we serve delivery
reports (``poll``) until there is room and try again, so nothing is dropped.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterable

from confluent_kafka import KafkaError, Message, Producer

log = logging.getLogger(__name__)

_QUEUE_MESSAGES = 1_000_000
_QUEUE_KBYTES = 1_048_576  # 1 GiB: room for a few seconds at full speed
# Fewer, larger record batches: the embedded broker's requests slow down with the number of
# batches in a partition (docs/streaming.md, Performance).
LINGER_MS = 200


class EventProducer:
    """A confluent-kafka producer with delivery accounting.

    ``delivered`` and ``failed`` count acknowledgements and failures as the delivery callbacks
    report them (``failed`` per topic, with the first error kept in ``first_error``).
    """

    def __init__(self, bootstrap_servers: str, *, compression: str = "lz4",
                 linger_ms: int = LINGER_MS, message_timeout_ms: int = 120_000) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.sent = 0
        self.delivered = 0
        self.failed: Counter[str] = Counter()
        self.first_error: str | None = None
        self._producer = Producer({
            "bootstrap.servers": bootstrap_servers,
            "client.id": "globalmart-generator",
            "acks": "all",
            "linger.ms": linger_ms,
            "batch.size": 1_000_000,
            "batch.num.messages": 100_000,
            "compression.type": compression,
            "queue.buffering.max.messages": _QUEUE_MESSAGES,
            "queue.buffering.max.kbytes": _QUEUE_KBYTES,
            "message.timeout.ms": message_timeout_ms,  # then the message counts as failed
            "on_delivery": self._on_delivery,
            "error_cb": self._on_error,
            "logger": logging.getLogger("generator.librdkafka"),  # not straight to stderr
        })

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self.delivered += 1
            return
        topic = msg.topic() or "?"
        self.failed[topic] += 1
        if self.first_error is None:
            self.first_error = f"{topic}: {err}"
            log.error("delivery failed (%s); further failures are counted", self.first_error)

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            log.error("Kafka producer fatal error: %s", err)
        else:
            log.warning("Kafka producer: %s", err)

    def send(self, messages: Iterable[tuple[str, bytes, bytes]],
             stop: threading.Event | None = None) -> int:
        """Hand messages (topic, key, value) to the producer without waiting for them;
        return how many were queued. When the queue is full, wait for deliveries to make
        room — unless ``stop`` is set, then return early (the rest is not sent)."""
        produce = self._producer.produce
        n = 0
        for topic, key, value in messages:
            try:
                produce(topic, value, key)
            except BufferError:
                if not self._produce_when_room(topic, key, value, stop):
                    break
            n += 1
        self._producer.poll(0)
        self.sent += n
        return n

    def _produce_when_room(self, topic: str, key: bytes, value: bytes,
                           stop: threading.Event | None) -> bool:
        while stop is None or not stop.is_set():
            self._producer.poll(0.05)  # deliveries free the queue
            try:
                self._producer.produce(topic, value, key)
                return True
            except BufferError:
                continue
        return False

    def poll(self, timeout: float) -> None:
        """Serve delivery callbacks for up to ``timeout`` seconds."""
        self._producer.poll(timeout)

    @property
    def in_flight(self) -> int:
        """Messages queued or in flight, not yet acknowledged."""
        return len(self._producer)

    def flush(self, timeout: float = 30.0) -> int:
        """Wait (up to ``timeout``) for every message to be acknowledged; return how many
        are still not."""
        return self._producer.flush(timeout)
