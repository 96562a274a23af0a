"""The experiment stage: A/B-test planning and analysis (the ``experiment`` section).

``plan`` answers "how many units do we need?" (and its inverse, "what can we detect with what we
have?") before a test starts; ``analysis`` judges a finished or running test from one row per
unit, through ``srm`` (the split check), ``two_sample`` (z and Welch tests), ``cuped`` and
``comparison`` (lift and verdict per arm), with ``analysis_inputs`` checking what it is given.
Guardrails (``experiment.guardrails``) are measured by ``guardrail_metrics``, tested by
``guardrails`` (non-inferiority, and harm with the always-valid test of ``sequential``), sized by
``guardrail_plan``, judged and decided by ``decision`` (ship / do not ship / keep running), put
together per look by ``guardrail_readout`` and shown by ``guardrail_report``.
Both are plain typed functions over statsmodels and scipy, so they are tested without Dagster and
reused by the CLI (``playbook ab plan``) and by whatever asset later reads the outcomes.
"""
