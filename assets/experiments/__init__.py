"""The experiment stage: A/B-test planning and analysis (the ``experiment`` section).

``plan`` answers "how many units do we need?" (and its inverse, "what can we detect with what we
have?") before a test starts; ``analysis`` judges a finished or running test from one row per
unit, through ``srm`` (the split check), ``two_sample`` (z and Welch tests), ``cuped`` and
``comparison`` (lift and verdict per arm), with ``analysis_inputs`` checking what it is given.
Both are plain typed functions over statsmodels and scipy, so they are tested without Dagster and
reused by the CLI (``playbook ab plan``) and by whatever asset later reads the outcomes.
"""
