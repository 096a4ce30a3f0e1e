"""sparseml's logs through this package's logging: its modifiers' loggers, and its own module logger's handler."""

from __future__ import annotations

import importlib
import logging

SPARSEML_LOGGER = "compression.sparseml"  # what the modifiers log (LR, sparsity, ...) goes through this logger


def sparseml_loggers():
    """A sparseml LoggerManager that logs through this package's logger.

    Without an explicit logger sparseml creates a default one that writes a ``sparse_logs/`` directory
    into the current working directory.
    """
    from sparseml.pytorch.utils import LoggerManager, PythonLogger

    return LoggerManager([PythonLogger(logger=logging.getLogger(SPARSEML_LOGGER))])


def configure_sparseml_logging(verbose: bool) -> None:
    """sparseml logs every graph transform at INFO through a handler of its own (so each line also
    reaches the root handler: printed twice), and sets this up when first imported. Import it now, drop
    its handler so its records print once, through ours, and show them only with ``verbose``."""
    importlib.import_module("sparseml.log")

    logger = logging.getLogger("sparseml")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.propagate = True
    # Without -v only its errors: its warnings are about its own internals (e.g. a distillation modifier
    # disabled on purpose while building untrained benchmark models).
    for name in ("sparseml", SPARSEML_LOGGER):
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.ERROR)
