"""A backend that runs a model's packed-input variant: several windows per row, so (almost) no token is
padding (see ``harness.packing`` for the layout and ``compression.packed`` for the variant).

``predict`` takes windows like every backend (``[n, seq]`` ids, mask, types), packs them best-fit
decreasing into rows of the model's sequence length, runs the rows in engine calls of the compiled batch
(``--batch-size`` counts rows here) and returns each window's logits on its real tokens; positions past a
window are ``PAD_LOGIT``, which the post-processing never picks. ``offline_batches`` hands the Offline SUT
groups of windows that fill one engine call each.

The variant is named by the model directory's manifest (``packed``: file, input names, row length),
written by ``compression.export.export_model_dir(..., packed_variant=True)``. Before a run, the same
synthetic windows go through the plain model alone and through the packed variant in ONNX Runtime; if
their logits disagree (a variant of another model, a broken export), the run stops with a ModelError.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from harness.accuracy import PAD_LOGIT
from harness.backends.base import Backend, BackendOptions, _pad_rows
from harness.backends.bucketed import BUCKET_TOLERANCE, probe_windows
from harness.backends.registry import Engine
from harness.errors import ConfigError, ModelError
from harness.models import ModelInfo
from harness.packing import pack_windows, packed_inputs, rows_per_call, unpack_logits

PACKED_INPUT_ROLES = ("input_ids", "window_ids", "token_type_ids", "position_ids")


def is_packed_variant(model: ModelInfo) -> bool:
    """Whether ``model`` is a packed variant (:func:`packed_variant`): rows of windows, told apart by window_ids."""
    return "window_ids" in model.input_names
# Packed vs alone, real tokens: FP32 reorders float sums (~1e-6); INT8 may also flip a quantization step
# where two sums differ in their last bits (measured on the untrained INT8 benchmark model through ONNX
# Runtime: one window in 48 moved by 2.6e-4 with logits of scale ~0.05), so INT8 gets 2% of the scale.
PACKING_TOLERANCE = {"fp32": BUCKET_TOLERANCE, "int8": {"rtol": 2e-2, "atol": BUCKET_TOLERANCE["atol"]}}
CHECK_WINDOWS = 8
MAX_WINDOWS_PER_ROW = 8  # Server's token-budget batches: a cap on windows per call of packed rows (SQuAD's hold ~2)


def packed_variant(model: ModelInfo) -> ModelInfo:
    """The packed-input variant named by ``model``'s manifest, as a ModelInfo (input roles of the packed
    layout); a ConfigError when the model directory has none."""
    spec = model.manifest.get("packed")
    if not spec:
        raise ConfigError(
            f"--packing: {model.model_dir} has no packed-input variant (its manifest names none). Models exported "
            "by this project's compression pipeline and benchmark-model builder carry one (model-packed.onnx); "
            "run this model without --packing")
    path = model.model_dir / spec["onnx_file"]
    if not path.is_file():
        raise ModelError(f"{path}: named as the packed-input variant by {model.model_dir / 'manifest.json'}, but "
                         "there is no such file")
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:
        raise ModelError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from exc
    initializers = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if sorted(i.name for i in inputs) != sorted(PACKED_INPUT_ROLES):
        raise ModelError(f"{path}: inputs {[i.name for i in inputs]}, expected the packed layout "
                         f"{list(PACKED_INPUT_ROLES)}")
    outputs = [o.name for o in graph.output]
    if [model.start_output, model.end_output] != outputs:
        raise ModelError(f"{path}: outputs {outputs}, expected those of {model.onnx_path.name} "
                         f"({model.start_output}, {model.end_output})")
    dims = inputs[0].type.tensor_type.shape.dim
    row_length = dims[1].dim_value if dims[1].HasField("dim_value") else None
    if row_length != model.sequence_length:
        raise ModelError(f"{path}: rows of {row_length} tokens, but {model.onnx_path.name} takes "
                         f"{model.sequence_length}")
    batch = dims[0].dim_value if dims[0].HasField("dim_value") and dims[0].dim_value > 0 else None
    return ModelInfo(onnx_path=path.resolve(), input_names={role: role for role in PACKED_INPUT_ROLES},
                     start_output=model.start_output, end_output=model.end_output, sequence_length=row_length,
                     batch_size=batch, manifest=model.manifest, embedding_rows=model.embedding_rows)


class PackedBackend(Backend):
    """Packs the windows of each call into rows and runs them on one engine of the packed variant."""

    def __init__(self, engine: Backend, model: ModelInfo, options: BackendOptions) -> None:
        super().__init__(model, options)
        self.engine = engine
        self.name = engine.name
        self.row_length = int(engine.model.sequence_length)
        self.check: dict = {}
        self._lock = threading.Lock()
        self._calls = self._rows = self._windows = self._real_tokens = 0

    @property
    def parallelism(self) -> int:
        return self.engine.parallelism

    @property
    def compute_streams(self) -> int:
        return self.engine.compute_streams

    @property
    def pads_batches(self) -> bool:
        return self.engine.pads_batches

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        return self.engine.batch_sizes

    @property
    def max_windows_per_call(self) -> int:
        # several windows per row; the token budget, counted in rows, is what bounds a call
        return self.batch_size * MAX_WINDOWS_PER_ROW

    def batch_cost(self, lengths: Sequence[int], width: int) -> int:
        """The packed rows of these windows, padded to a batch size per engine call."""
        groups = rows_per_call(pack_windows(np.arange(len(lengths)), np.asarray(lengths), self.row_length),
                               self.batch_size)
        return sum(self.padded_rows(len(group)) for group in groups) * self.row_length

    def offline_batches(self, items: list, lengths: np.ndarray | None) -> list[list]:
        """Every window packed at once (best-fit decreasing over the whole query), cut into groups of
        ``batch_size`` rows: each group's windows are one ``predict`` call that fills one engine call."""
        rows = pack_windows(np.arange(len(items)), np.asarray(lengths), self.row_length)
        return [[items[w] for row in group for w in row.windows] for group in rows_per_call(rows, self.batch_size)]

    def predict(self, input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
        """Any number of windows (right-padded); logits ``[n, longest window]``, ``PAD_LOGIT`` past each window."""
        n = input_ids.shape[0]
        if n == 0:
            raise ValueError("batch of 0 samples")
        lengths = np.asarray(attention_mask).sum(axis=1)
        rows = pack_windows(np.arange(n), lengths, self.row_length)
        width = int(lengths.max())
        out_start = np.full((n, width), PAD_LOGIT, dtype=np.float32)
        out_end = np.full((n, width), PAD_LOGIT, dtype=np.float32)
        groups = rows_per_call(rows, self.batch_size)
        for group in groups:
            feeds = packed_inputs(group, input_ids, token_type_ids, lengths, self.row_length)
            if self.pads_batches and (padded := self.padded_rows(len(group))) > len(group):
                feeds = {name: _pad_rows(array, padded) for name, array in feeds.items()}
            start, end = self.engine._run(feeds)  # the inner engine maps nothing: roles are the input names
            unpack_logits(group, start, end, lengths, out_start, out_end)
        with self._lock:
            self._calls += len(groups)
            self._rows += len(rows)
            self._windows += n
            self._real_tokens += int(lengths.sum())
        return out_start, out_end

    def _run(self, feeds):  # pragma: no cover - predict() packs and runs the inner engine
        raise NotImplementedError

    def describe(self) -> dict:
        with self._lock:
            calls, rows, windows, tokens = self._calls, self._rows, self._windows, self._real_tokens
        return {**self.engine.describe(), "packing": {
            "variant": str(self.engine.model.onnx_path), "row_length": self.row_length,
            "rows_per_engine_call": self.batch_size, "engine_calls": calls, "rows": rows, "windows": windows,
            "windows_per_row": round(windows / rows, 3) if rows else None,
            "padding_share": round(1 - tokens / (rows * self.row_length), 4) if rows else None,
            "check": self.check}}

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
        self.engine = None


def create_packed_backend(engine: Engine, model: ModelInfo, options: BackendOptions) -> PackedBackend:
    """One ``engine`` of ``model``'s packed variant (``options.batch_size`` rows per call), checked first."""
    variant = packed_variant(model)
    check = check_packing_equivalence(model, variant)
    engine = engine(variant, replace(options, packing=False, sequence_buckets=None))
    backend = PackedBackend(engine, model, options)
    backend.check = check
    return backend


def check_packing_equivalence(model: ModelInfo, variant: ModelInfo) -> dict:
    """The same synthetic windows alone through ``model`` and packed through ``variant`` (ONNX Runtime for
    both: this checks the variant's graph, not an engine); their real tokens' logits must agree."""
    import onnxruntime as ort

    length = int(model.sequence_length or variant.sequence_length)
    # windows of a third of a row or less: rows hold several, so the check covers the block-diagonal mask
    ids, mask, types, lengths = probe_windows(CHECK_WINDOWS, length, max(8, length // 3))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        plain = ort.InferenceSession(str(model.onnx_path), options, providers=["CPUExecutionProvider"])
        packed = ort.InferenceSession(str(variant.onnx_path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelError(f"{variant.onnx_path}: ONNX Runtime could not load it for the packing check ({exc})") from exc
    names = model.input_names
    alone_start, alone_end = plain.run([model.start_output, model.end_output],
                                       {names["input_ids"]: ids, names["attention_mask"]: mask,
                                        names["token_type_ids"]: types})
    rows = pack_windows(np.arange(len(lengths)), lengths, length)
    start, end = packed.run([variant.start_output, variant.end_output],
                            packed_inputs(rows, ids, types, lengths, length))
    got_start, got_end = np.zeros_like(alone_start), np.zeros_like(alone_end)
    unpack_logits(rows, start, end, lengths, got_start, got_end)
    real = np.arange(length)[None, :] < lengths[:, None]
    diff = max(float(np.abs(got_start - alone_start)[real].max()), float(np.abs(got_end - alone_end)[real].max()))
    precision = "int8" if model.manifest.get("precision") == "int8" else "fp32"
    scale = float(max(np.abs(alone_start[real]).max(), np.abs(alone_end[real]).max(), 1e-6))
    tolerance = PACKING_TOLERANCE[precision]
    allowed = tolerance["atol"] + tolerance["rtol"] * scale
    if not diff <= allowed:
        raise ModelError(f"{variant.onnx_path}: packed, the windows' logits differ from {model.onnx_path.name} alone "
                         f"by up to {diff:.3g} (allowed {allowed:.3g} for {precision}); the packed variant does not "
                         "compute the same model: re-export it, or run without --packing")
    return {"max_abs_diff": diff, "allowed": allowed, "logit_scale": scale, "probe_windows": len(lengths),
            "rows": len(rows), "engine": "onnxruntime"}
