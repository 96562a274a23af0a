"""Tabular models and their yardsticks: LightGBM learners, offline metrics and named baselines.

Plain functions and picklable model objects, no Dagster: the training assets call them, log the
models to MLflow, and the serving layer loads the same objects.
"""
