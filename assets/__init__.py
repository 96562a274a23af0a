"""Asset factories by pipeline stage: raw, split, features, training, models, indexing, funnel,
serving, monitoring, experiments, quality.

One rule for names: a module that defines assets is ``<asset>_assets.py`` and one that defines
asset checks is ``<what>_checks.py``, named for what it makes (``model_assets``,
``quality_checks``); every other module holds the plain, typed functions those factories wire to
storage and metadata. Asset keys, paths and column names come from ``runtime.layout``.
"""
