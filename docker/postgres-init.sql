-- Dagster keeps runs, events and schedules in its own database on the same server.
CREATE DATABASE dagster OWNER globalmart;
