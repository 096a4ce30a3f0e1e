"""MLPerf Inference submission packaging for bert-99: runs, TEST01, system description, tree, validator.

Modules: ``rules`` (what the submission checker enforces for bert-99), ``layout`` (where files go, v6
or v5 layout), ``system`` (system description JSON), ``runs`` (reuse or run performance / accuracy /
TEST01), ``compliance`` (TEST01 audit.config and verification), ``package`` (assembly), ``validate``
(local validator, per division), ``official`` (the official checker from a local clone of
mlcommons/inference), ``report`` (results table), ``workflow`` (the whole command), ``cli`` (argparse).
"""
