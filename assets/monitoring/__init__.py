"""The monitoring stage: drift of features, label rate and volume (the ``monitoring`` section)."""
