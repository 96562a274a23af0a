"""Online serving over the shared runtime: BentoML services, handlers, micro-batching, Triton.

Builds on ``runtime`` (models, features, index, bundle) and never imports ``assets``,
``resources``, ``dagster_project`` or Dagster: a service runs without them.
"""
