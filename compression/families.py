"""The model families the pipeline compresses: MobileBERT (the published recipes' model) and BERT.

The packaged recipes name MobileBERT's parameters (``mobilebert.encoder.layer.*...``). For any other
family the same recipe is derived (:func:`compression.recipes.derive_recipe` with ``target=``): the
base-model prefix is swapped, parameter patterns naming modules the family does not have (MobileBERT's
bottlenecks and stacked feed-forward networks) are dropped, and the LayerPruningModifier, which belongs to
MobileBERT's layer dropping, is left out. Modifiers, schedules, the 4-block mask, distillation and frozen
embeddings stay as published; the derived recipe lists every change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from compression.errors import CompressionError


@dataclass(frozen=True)
class ModelFamily:
    name: str
    model_type: str  # transformers' config.model_type
    base_prefix: str  # the attribute (and parameter-name prefix) of the encoder model inside the QA model
    qa_class: str  # the transformers question-answering class
    drops_layers: bool  # whether the recipe's LayerPruningModifier (keep the first 14 of 24 layers) applies
    geometry_keys: tuple[str, ...]  # config fields worth recording in a manifest


MOBILEBERT = ModelFamily(
    name="mobilebert", model_type="mobilebert", base_prefix="mobilebert", qa_class="MobileBertForQuestionAnswering",
    drops_layers=True,
    geometry_keys=("vocab_size", "embedding_size", "hidden_size", "true_hidden_size", "intra_bottleneck_size",
                   "intermediate_size", "num_attention_heads", "num_hidden_layers", "num_feedforward_networks",
                   "normalization_type", "trigram_input", "use_bottleneck", "key_query_shared_bottleneck",
                   "max_position_embeddings"),
)
BERT = ModelFamily(
    name="bert", model_type="bert", base_prefix="bert", qa_class="BertForQuestionAnswering", drops_layers=False,
    geometry_keys=("vocab_size", "hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers",
                   "max_position_embeddings"),
)
FAMILIES = {family.model_type: family for family in (MOBILEBERT, BERT)}
RECIPE_FAMILY = MOBILEBERT  # the family the packaged recipes are written for


def family_of(model_or_config: torch.nn.Module | Any) -> ModelFamily:
    """The family of a transformers model (or config), by ``config.model_type``."""
    config = getattr(model_or_config, "config", model_or_config)
    model_type = getattr(config, "model_type", None)
    if model_type not in FAMILIES:
        raise CompressionError(f"a {model_type or type(model_or_config).__name__} model: the pipeline compresses "
                               f"{' and '.join(f.name for f in FAMILIES.values())} question-answering models")
    return FAMILIES[model_type]


def encoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The encoder's layer list of a QA model of any supported family."""
    return getattr(model, family_of(model).base_prefix).encoder.layer


def qa_model_class(family: ModelFamily) -> type:
    import transformers

    return getattr(transformers, family.qa_class)


def geometry_summary(config: Any) -> dict[str, Any]:
    """The geometry fields of a config worth recording in a manifest."""
    family = family_of(config)
    return {"family": family.name, **{key: getattr(config, key) for key in family.geometry_keys}}


def translate_name(name: str, family: ModelFamily, source: ModelFamily = RECIPE_FAMILY) -> str:
    """A recipe's parameter/module name or ``re:`` pattern for another family's model: the base-model
    prefix is swapped (``re:mobilebert.encoder...`` -> ``re:bert.encoder...``); other names stay."""
    marker = "re:" if name.startswith("re:") else ""
    body = name[len(marker):]
    if body.startswith(source.base_prefix + "."):
        body = family.base_prefix + body[len(source.base_prefix):]
    return marker + body
