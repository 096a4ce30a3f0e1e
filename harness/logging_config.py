"""Logging of every harness command and of its child processes: quiet by default, -v for every library's details."""

from __future__ import annotations

import logging
import os
import warnings

from cmdline.children import settle_tokenizers_parallelism

# Libraries that log routine progress at INFO (sparseml's export transforms, DeepSparse's engine banner and
# CPU notices): a user sees them with -v only.
_CHATTY_LOGGERS = ("sparseml", "sparsezoo", "deepsparse", "onnx", "onnxruntime", "openvino", "transformers", "torch",
                   "accelerate")


def configure_logging(verbose: bool) -> None:
    """Quiet by default: progress bars, the summary and warnings; -v shows every library's details."""
    settle_tokenizers_parallelism()  # before anything tokenizes or forks
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
    )
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)
    if not verbose:
        # sparseml imports pkg_resources, which warns about its own deprecation on every start
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        # DeepSparse's engine logs natively (read when it loads): keep its errors, drop notices such as the
        # once-per-process note that INT8 is emulated without VNNI (run.json records cpu_vnni anyway).
        os.environ.setdefault("NM_LOGGING_LEVEL", "error")

