"""Failed runs and failed checks become alerts, in the same table and topic as the stream's
(``public.alerts`` and ``alerts``), so the dashboard, the API's ``/monitoring/alerts`` and
whoever consumes the topic see them beside the anomalies.

- ``failed_run_alerts``: a run of any job of this code location failed: one ``critical``
  alert (entity: the job and its partition), and one per check (and day, for a daily check
  in a backfill of several days) that failed in it.
- ``failed_check_alerts``: a run succeeded but a check in it failed (a non-blocking check, a
  freshness check): one alert per failed check, ``critical`` for an ERROR check, ``warning``
  for a WARN one.

Alert ids derive from the run id (and the check), so a sensor tick evaluated again raises
nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
from dagster._core.events import DagsterEventType

from globalmart.alerts import insert_alerts, make_alert
from globalmart.contracts import Alert
from globalmart.vocabulary import DAGSTER_CHECK_FAILED, DAGSTER_RUN_FAILED
from globalmart_dagster.resources import KafkaResource, WarehouseResource

MAX_MESSAGE = 500


def failed_checks(instance: dg.DagsterInstance, run_id: str) -> list[dg.AssetCheckEvaluation]:
    """The check evaluations of a run that did not pass."""
    records = instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
    evaluations = [r.dagster_event.event_specific_data for r in records if r.dagster_event]
    return [e for e in evaluations if isinstance(e, dg.AssetCheckEvaluation) and not e.passed]


def run_alerts(run: dg.DagsterRun, failure: str | None,
               checks: Sequence[dg.AssetCheckEvaluation]) -> list[Alert]:
    """The alerts of a finished run: its failure (``failure``, the reason, or None when it
    succeeded) and each of its failed ``checks``."""
    partition = run.tags.get("dagster/partition")
    where = f"{run.job_name} [{partition}]" if partition else run.job_name
    alerts = []
    if failure is not None:
        alerts.append(make_alert(
            DAGSTER_RUN_FAILED, "critical", where,
            f"run {run.run_id} of {where} failed: {failure}"[:MAX_MESSAGE],
            key=f"dagster-run:{run.run_id}"))
    for check in checks:
        name = f"{check.asset_key.to_user_string()}:{check.check_name}"
        judged = f"{name} [{check.partition}]" if check.partition else name
        severity = "critical" if check.severity == dg.AssetCheckSeverity.ERROR else "warning"
        alerts.append(make_alert(
            DAGSTER_CHECK_FAILED, severity, name,
            f"check {judged} failed in run {run.run_id} of {where}: "
            f"{check.description or 'no description'}"[:MAX_MESSAGE],
            key=f"dagster-check:{run.run_id}:{judged}"))
    return alerts


def raise_alerts(warehouse: WarehouseResource, kafka: KafkaResource,
                 alerts: Sequence[Alert]) -> int:
    """Insert the alerts not raised yet into ``public.alerts`` (committed first: the table is
    what the API, the dashboard and Grafana read), then produce them to the ``alerts`` topic.
    A failed delivery fails the sensor's tick (shown in the UI with the error); Dagster's run
    status sensors move past the run either way, so those messages are then missing from the
    topic, not from the table. Returns how many were new."""
    with warehouse.connect() as conn:
        known = {row[0] for row in conn.execute(
            "SELECT alert_id FROM public.alerts WHERE alert_id = ANY(%s)",
            ([a.alert_id for a in alerts],))}
        new = [a for a in alerts if a.alert_id not in known]
        insert_alerts(conn, new)
    kafka.publish_alerts(new)
    return len(new)


@dg.run_failure_sensor(name="failed_run_alerts", default_status=dg.DefaultSensorStatus.RUNNING,
                       description="Turns every failed run (and the checks that failed in it) "
                                   "into rows of public.alerts and messages on the alerts topic.")
def failed_run_alerts(context: dg.RunFailureSensorContext, warehouse: WarehouseResource,
                      kafka: KafkaResource) -> None:
    """A failed run: one critical alert, and one per check that failed in it."""
    run = context.dagster_run
    alerts = run_alerts(run, context.failure_event.message or "no reason given",
                        failed_checks(context.instance, run.run_id))
    raised = raise_alerts(warehouse, kafka, alerts)
    context.log.info("run %s failed: %d alerts raised", run.run_id, raised)


@dg.run_status_sensor(run_status=dg.DagsterRunStatus.SUCCESS, name="failed_check_alerts",
                      default_status=dg.DefaultSensorStatus.RUNNING,
                      description="Turns every check that failed in a successful run (non-blocking "
                                  "and freshness checks) into rows of public.alerts and messages "
                                  "on the alerts topic.")
def failed_check_alerts(context: dg.RunStatusSensorContext, warehouse: WarehouseResource,
                        kafka: KafkaResource) -> None:
    """A successful run: one alert per check that failed in it."""
    run = context.dagster_run
    alerts = run_alerts(run, None, failed_checks(context.instance, run.run_id))
    if alerts:
        raised = raise_alerts(warehouse, kafka, alerts)
        context.log.info("run %s: %d failed checks raised as alerts", run.run_id, raised)


ALERT_SENSORS = [failed_run_alerts, failed_check_alerts]
