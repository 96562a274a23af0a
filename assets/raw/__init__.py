"""The raw stage: event logs and entity tables from a synthetic or file source, validated."""
