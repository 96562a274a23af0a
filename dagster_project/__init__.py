"""Dagster wiring: the loader that reads ``configs/``, Definitions, jobs, schedules and the CLI."""
