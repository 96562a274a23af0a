"""The quality stage: Great Expectations suites on feature tables and training sets (``quality``).

The plain functions: ``suites`` builds a table's suite from the rules, ``validation`` runs it on a
frame (in the throwaway GE context of ``gx_context``), ``data_docs`` writes the HTML docs and
``outcomes`` reports the results. Dagster asset checks (``quality_checks``) wrap
:func:`~assets.quality.validation.run_quality`, so the checks stay thin and the rules are testable
without a Dagster instance.
"""
