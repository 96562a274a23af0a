"""Online serving: BentoML services, Triton export, post-processing and A/B routing.

Never imports ``assets`` or ``dagster_project``: a service runs without Dagster.
"""
