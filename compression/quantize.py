"""INT8 quantization-aware-training (QAT) preparation through sparseml's recipe machinery.

The quantization recipe's ``QuantizationModifier`` (routed by sparseml to its legacy implementation
because the recipe uses ``submodules``/``quantize_embeddings``/...) wraps every Linear of
``mobilebert.embeddings``, ``mobilebert.encoder`` and ``qa_outputs`` in a ``QuantWrapper`` with INT8
fake-quantization of its input and weights (linear output activations are not quantized) and fake-quantizes
the embedding tables. Its ``ConstantPruningModifier`` keeps the pruning masks fixed while the weights
are trained.

Two ways in, both via ``ScheduledModifierManager``:

* ``one_shot=True`` (the untrained benchmark model): apply the whole recipe at its end (epoch inf), which
  enables QAT, runs the calibration batches through the model so the observers record activation ranges,
  and disables the observers (``disable_quantization_observer_epoch``). The model is then frozen.
* ``one_shot=False`` (the training pipeline): initialise the manager at epoch 0 and let the training
  loop drive it (``manager.modify(...)``); observers freeze when the recipe says so.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from compression.errors import CompressionError, RecipeError
from compression.recipes import Recipe, dump_recipe
from compression.sparseml_logging import sparseml_loggers

log = logging.getLogger(__name__)


def load_manager(recipe: Path | str | Recipe):
    """A ``ScheduledModifierManager`` for a recipe file path or an in-memory recipe mapping."""
    from sparseml.pytorch.optim import ScheduledModifierManager

    if isinstance(recipe, Mapping):
        source = dump_recipe(dict(recipe))
    else:
        path = Path(recipe)
        if not path.is_file():
            raise RecipeError(f"recipe file {path} does not exist")
        source = str(path)
    try:
        return ScheduledModifierManager.from_yaml(source)
    except Exception as exc:  # sparseml raises ValueError/KeyError/yaml errors for bad recipes
        shown = source if len(source) < 200 else "(inline recipe)"
        raise RecipeError(f"sparseml could not load the recipe {shown}: {exc}") from exc


def is_qat_model(model: torch.nn.Module) -> bool:
    """True if the model holds fake-quantize modules (i.e. QAT was prepared)."""
    return any(isinstance(m, torch.ao.quantization.FakeQuantizeBase) for m in model.modules())


def freeze_observers(model: torch.nn.Module) -> None:
    """Stop every quantization observer from updating its range, model-wide.

    The recipe's observer freeze only reaches modules it kept a reference to; the ``qa_outputs`` wrapper
    created by the swap is not among them, so an explicit pass over the whole model is needed.
    """
    model.apply(torch.ao.quantization.disable_observer)


def float64_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of a QAT ``model`` that computes in float64 at the same frozen scales, zero points and integer weights:
    the same INT8 model, evaluated with far less float rounding (the original is left as it is).

    Why it is needed: an INT8 model's outputs are not a fixed function of its integers and scales. Wherever a float
    result lands within rounding error of an 8-bit step, one ulp decides the step, and each flipped step moves the
    next layer's sums by a whole quantization step, which flips more. How far two correct evaluations of one QAT
    model may lie apart is therefore a property of the model, measured by evaluating it in float32 and float64
    (figures: docs/accuracy.md, "How far apart two correct INT8 evaluations are"). Engines that compute in float32 or
    integers land in that spread; compression.verify judges them against it.
    """
    return copy.deepcopy(model).double().eval()


@contextlib.contextmanager
def weights_snapped_to_quantized_values(model: torch.nn.Module) -> Iterator[int]:
    """While inside: every fake-quantized weight holds its fake-quantized value (yields how many); restored after.

    The PyTorch model computes the same either way (fake quantization is idempotent at fixed scales), but an INT8
    export made inside stores exactly the integers PyTorch uses. Otherwise sparseml's exporter re-quantizes the
    float weights with its own rounding, which lands one step off on values at a rounding tie (enough to move a
    trained model's held-out F1: docs/accuracy.md). The fake-quantize modules' frozen scales are used directly:
    calling the modules would let an enabled observer move them.
    """
    originals: list[tuple[torch.Tensor, torch.Tensor]] = []
    try:
        with torch.no_grad():
            for module in model.modules():
                fake_quant, weight = getattr(module, "weight_fake_quant", None), getattr(module, "weight", None)
                if not isinstance(fake_quant, torch.ao.quantization.FakeQuantizeBase) or weight is None:
                    continue
                if fake_quant.is_per_channel:
                    quantized = torch.fake_quantize_per_channel_affine(
                        weight, fake_quant.scale, fake_quant.zero_point.to(torch.int32), fake_quant.ch_axis,
                        fake_quant.quant_min, fake_quant.quant_max)
                else:
                    quantized = torch.fake_quantize_per_tensor_affine(
                        weight, float(fake_quant.scale), int(fake_quant.zero_point), fake_quant.quant_min,
                        fake_quant.quant_max)
                originals.append((weight, weight.detach().clone()))
                weight.copy_(quantized)
        yield len(originals)
    finally:
        with torch.no_grad():
            for weight, original in originals:
                weight.copy_(original)


def prepare_qat(
    model: torch.nn.Module,
    recipe: Path | str | Recipe,
    *,
    calibration_batches: Iterable[Mapping[str, torch.Tensor]] | None = None,
    one_shot: bool = True,
    progress: bool = True,
    **initialize_kwargs: Any,
):
    """Apply a quantization recipe to ``model`` in place and return the sparseml manager.

    ``recipe`` must not contain a LayerPruningModifier for layers the model no longer has (use
    :func:`compression.recipes.derive_recipe`). ``calibration_batches`` are keyword-argument dicts for
    ``model(**batch)``; with ``one_shot`` they are required, because an uncalibrated observer leaves the
    activation ranges at their initial values. ``initialize_kwargs`` go to the modifiers (for example
    ``distillation_teacher=...`` in training).
    """
    if is_qat_model(model):
        raise CompressionError("the model is already prepared for QAT")
    manager = load_manager(recipe)
    batches = list(calibration_batches) if calibration_batches is not None else None
    if one_shot and not batches:
        raise CompressionError("one-shot QAT preparation needs calibration batches for the observers")
    calibration = (tqdm(batches, desc="QAT calibration", unit="batch", leave=False, disable=not progress)
                   if batches else None)

    was_training = model.training
    model.eval()  # calibration forwards must not use dropout
    if one_shot:
        manager.apply(
            model,
            epoch=math.inf,
            loggers=sparseml_loggers(),
            finalize=True,
            calibration_dataloader=calibration,
            **initialize_kwargs,
        )
        freeze_observers(model)
    else:
        manager.initialize(
            model, epoch=0.0, loggers=sparseml_loggers(), calibration_dataloader=calibration, **initialize_kwargs
        )
        model.train(was_training)
    if not is_qat_model(model):
        raise RecipeError("the recipe did not add fake-quantization to the model (does it have a QuantizationModifier?)")
    log.info("QAT prepared (%s); %d fake-quantize modules", "one-shot, observers frozen" if one_shot else "training",
             sum(isinstance(m, torch.ao.quantization.FakeQuantizeBase) for m in model.modules()))
    return manager
