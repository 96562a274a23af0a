"""The quality stage: Great Expectations suites on feature tables and training sets (``quality``).

``suites`` holds the plain functions (suite building, validation, data docs); Dagster asset checks
wrap them, so the checks stay thin and the rules are testable without a Dagster instance.
"""
