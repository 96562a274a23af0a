"""The indexing stage: a FAISS index over item embeddings, chosen by size and tuned to recall.

The plain functions here do not import Dagster, so they can be tested, benchmarked and loaded by
the serving layer on their own; asset factories that wire them to storage can live beside them.
"""
