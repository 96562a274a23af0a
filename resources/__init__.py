"""Dagster resources: storage, and later the feature store, MLflow and serving clients.

Resources never import ``assets`` or ``dagster_project``.
"""
