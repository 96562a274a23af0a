"""The feature stage: windowed aggregates and attributes per entity, registered in Feast."""
