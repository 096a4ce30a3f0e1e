"""MobileBERT geometry presets, randomly initialised QA models and direct encoder-layer dropping.

``mobilebert-uncased`` spells out every setting of the published ``google/mobilebert-uncased`` config
instead of relying on ``MobileBertConfig``'s defaults: they agree today except for
``classifier_activation`` (True in transformers, False in the published config; it only affects the
pooler, which the QA head does not use), and an explicit preset keeps the geometry fixed if the library
defaults ever move.

``tiny`` keeps the structure that matters to the recipes (bottlenecks, shared query/key bottleneck,
4 stacked FFNs, trigram input, NoNorm, the real vocabulary size) so that every parameter pattern of the
oBERT recipes exists, with dimensions small enough for tests and smoke runs. All dimensions of both
presets are multiples of 4, as 4-block pruning needs along each weight's input dimension.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import MobileBertConfig, MobileBertForQuestionAnswering

from compression.errors import CompressionError
from compression.families import encoder_layers, family_of

log = logging.getLogger(__name__)

DEFAULT_PRESET = "mobilebert-uncased"


@dataclass(frozen=True)
class GeometryPreset:
    """A named MobileBERT geometry.

    ``kept_layers`` is how many encoder layers the layer-dropped variants keep. ``None`` means "as the
    compression recipe's LayerPruningModifier says" (14 of 24 for the real geometry); presets whose
    depth differs from the recipe's model give their own scaled-down count.
    """

    name: str
    config: dict[str, Any] = field(default_factory=dict)
    kept_layers: int | None = None
    description: str = ""

    @property
    def num_layers(self) -> int:
        return int(self.config["num_hidden_layers"])


# The published google/mobilebert-uncased config.json, key for key (transformers_version aside).
_MOBILEBERT_UNCASED: dict[str, Any] = {
    "vocab_size": 30522,
    "embedding_size": 128,
    "hidden_size": 512,
    "true_hidden_size": 128,
    "intra_bottleneck_size": 128,
    "intermediate_size": 512,
    "num_attention_heads": 4,
    "num_hidden_layers": 24,
    "num_feedforward_networks": 4,
    "normalization_type": "no_norm",
    "trigram_input": True,
    "use_bottleneck": True,
    "use_bottleneck_attention": False,
    "key_query_shared_bottleneck": True,
    "hidden_act": "relu",
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
    "classifier_activation": False,
}

PRESETS: dict[str, GeometryPreset] = {
    "mobilebert-uncased": GeometryPreset(
        name="mobilebert-uncased",
        config=_MOBILEBERT_UNCASED,
        kept_layers=None,
        description="google/mobilebert-uncased geometry (24 layers, hidden 512, bottleneck 128, 4 FFNs)",
    ),
    "tiny": GeometryPreset(
        name="tiny",
        config={
            **_MOBILEBERT_UNCASED,
            "embedding_size": 32,
            "hidden_size": 64,
            "true_hidden_size": 32,
            "intra_bottleneck_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 4,
        },
        kept_layers=2,
        description="tiny MobileBERT for tests and smoke runs (4 layers, hidden 64, bottleneck 32, 4 FFNs)",
    ),
}


def get_preset(preset: str) -> GeometryPreset:
    """Look a preset up by name; raise a :class:`CompressionError` listing the valid names."""
    try:
        return PRESETS[preset]
    except KeyError:
        raise CompressionError(
            f"unknown geometry preset {preset!r}; expected one of {', '.join(sorted(PRESETS))}"
        ) from None


def make_config(preset: str = DEFAULT_PRESET, num_layers: int | None = None) -> MobileBertConfig:
    """The :class:`MobileBertConfig` of ``preset``, optionally with a different encoder depth."""
    settings = dict(get_preset(preset).config)
    if num_layers is not None:
        if num_layers < 1:
            raise CompressionError(f"num_layers must be at least 1, got {num_layers}")
        settings["num_hidden_layers"] = num_layers
    config = MobileBertConfig(**settings)
    config.architectures = ["MobileBertForQuestionAnswering"]
    return config


def build_model(
    preset: str = DEFAULT_PRESET, num_layers: int | None = None, seed: int = 42
) -> MobileBertForQuestionAnswering:
    """A randomly initialised (untrained) MobileBERT QA model, identical for identical arguments.

    The global torch RNG is left untouched: initialisation runs inside a forked RNG state seeded with
    ``seed``. The model is returned in eval mode.
    """
    config = make_config(preset, num_layers)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MobileBertForQuestionAnswering(config)
    return model.eval()


def encoder_layer_count(model: torch.nn.Module) -> int:
    """Number of encoder layers the model actually holds (not what its config claims)."""
    return len(encoder_layers(model))


def drop_layers(model: torch.nn.Module, keep: int) -> torch.nn.Module:
    """Keep encoder layers ``0 .. keep-1`` and delete the rest, in place; embeddings are untouched.

    This is the direct form of the recipe's ``LayerPruningModifier`` (which swaps the dropped layers for
    identities during training): either way the dropped layers pass hidden states through unchanged, so
    removing them gives the same function with a smaller graph. ``config.num_hidden_layers`` is updated
    because the encoder sizes its per-layer head mask from it.
    """
    current = encoder_layer_count(model)
    if not 1 <= keep <= current:
        raise CompressionError(f"cannot keep {keep} encoder layers: the model has {current} (keep must be 1..{current})")
    if keep < current:
        encoder = getattr(model, family_of(model).base_prefix).encoder
        encoder.layer = torch.nn.ModuleList(list(encoder.layer)[:keep])
        log.info("dropped encoder layers %d..%d; %d remain", keep, current - 1, keep)
    model.config.num_hidden_layers = keep
    return model
