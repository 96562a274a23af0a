"""The serving funnel evaluated offline: retrieve, rank, post-process, measure end to end."""
