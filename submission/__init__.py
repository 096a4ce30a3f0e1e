"""MLPerf Inference submission packaging for bert-99, an application of the harness: ``python -m submission``.

Modules: ``rules`` (what the submission checker enforces for bert-99), ``layout`` (where files go, v6 or v5 layout),
``system`` (system description JSON), ``runs`` (reuse or run performance / accuracy / TEST01), ``compliance`` (TEST01
verification), ``package`` (assembly), ``validate`` (local validator: the tree; ``log_checks``: the LoadGen logs;
``findings``: what they report), ``official`` (the official checker from a local clone of mlcommons/inference),
``report`` (results table), ``workflow`` (the whole command), ``cli`` (the command line).
"""
