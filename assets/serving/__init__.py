"""Serving stage: the serving bundle, the Bento and the Triton model repository, built as assets."""
