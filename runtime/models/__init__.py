"""The served model objects: what MLflow stores and a service loads, with no training code.

Training lives in ``assets.models``; these classes only predict, so a service (or a Bento, or a
Triton Python model) unpickles them without importing ``assets`` or Dagster. Pickles written
before these classes moved here name ``serving.models``: ``runtime.legacy`` still loads them.
"""
