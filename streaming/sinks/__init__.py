"""Where the realtime query writes: PostgreSQL (psycopg 3), Kafka topics and Parquet.

Every PostgreSQL write of a micro-batch happens in one transaction together with a row in
``stream_state.batch_commits`` (:meth:`store.Postgres.run_batch`): a batch Spark replays after
a crash finds its row and is skipped, so additive writes (sales sums, stock counters, merged
sessions) never count twice. De-duplication state (``stream_state.seen_events``) and the
watermark (``stream_state.query_progress``) change in that same transaction (:mod:`.state`).
Messages for Kafka topics (:mod:`.topics`) are produced and flushed before the transaction
commits, with deterministic ids, so a replay may repeat a message but never loses one. A
batch's raw-layer rows are buffered in that same transaction; the raw-layer flush writes them
to Parquet files named by the range of batches they hold and deletes them from the buffer in
its own transaction (:mod:`.raw`).

Rows reach PostgreSQL through ``COPY`` into a temporary table (:mod:`.store`), then
``INSERT ... ON CONFLICT``.

One batch goes through the modules in this order (:class:`batch.RealtimeSink`):

1. :mod:`.batch`: the batch's Kafka records are collected to the driver and validated once
   (:func:`streaming.transforms.parse.validate`); the rejects become dead letters
   (:mod:`.dead_letters`). The rest runs in the batch's transaction.
2. :mod:`.state`: the events on time and new to the query are accepted; those behind the
   watermark go to the raw layer only.
3. :mod:`.dead_letters`: the rejects to the ``dead_letter`` topic and table.
4. Each output module pairs a pure transform of :mod:`streaming.transforms` with its SQL. The
   batch's session pieces are staged (:mod:`.sessions`) and merged with the stored sessions
   on a second thread, while the rows of :mod:`.sales`, :mod:`.anomalies`, :mod:`.stock` and
   :mod:`.raw` are computed; then sales and order metrics, anomalies and stock are written,
   the alerts they raised inserted (:mod:`.alerts`), abandoned carts decided (which advances
   the watermark) and the raw-layer rows buffered.
5. :mod:`.alerts`: the alerts to the ``alerts`` topic; once the transaction has committed, to
   the notifier.
"""
