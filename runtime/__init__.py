"""The Dagster-free runtime that training and serving share.

What a trained model needs wherever it runs lives here, once: the served model objects
(``runtime.models``), the feature matrix they read, the online feature reader, the ANN index,
post-processing, the serving bundle, A/B routing, the request log, and every naming convention
(``runtime.layout``). ``assets`` trains and evaluates with these objects; ``serving`` answers HTTP
requests with them; a Bento packs this package whole.

Imports only ``configs`` and libraries: never Dagster, ``assets``, ``resources`` or ``serving``
(import-linter enforces it), so a service, a Bento or a Triton export loads it without them.
"""
