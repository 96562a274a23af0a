"""Asset factories by pipeline stage (``raw``, then features, training, serving, monitoring).

Each stage's plain functions live beside the factory that wires them to storage and metadata.
"""
