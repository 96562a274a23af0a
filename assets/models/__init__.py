"""Tabular models and their yardsticks: LightGBM learners, offline metrics and named baselines.

Plain functions, no Dagster: the training assets call them and log the models to MLflow. The
model objects themselves live in ``runtime.models``, so a service unpickles them without
importing anything from ``assets``.
"""
