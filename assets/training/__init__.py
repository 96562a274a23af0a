"""Training-set assembly: point-in-time joins of labels to feature tables.

The plain functions here (``pit_join``) do not import Dagster, so they can be tested, benchmarked
and reused by services on their own; the asset factories that wire them to storage live beside
them.
"""
