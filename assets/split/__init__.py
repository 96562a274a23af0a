"""The split stage: which rows are train, validation and test (the ``split`` section)."""
