"""The packaged sparseml recipes: loading, reading their settings, matching their parameter patterns,
and deriving the runtime variants the pipeline actually applies.

The recipes under ``compression/recipes/`` are the source of truth and are never edited. Everything the
pipeline needs from them (which parameters are pruned, the target sparsity and block pattern, which
layers are dropped) is read from the files here rather than retyped in code.

Recipes use YAML tags for modifiers (``- !OBSPruningModifier``). They are loaded into
:class:`RecipeModifier` objects (tag + fields) so they can be inspected, edited and written back in a form
``sparseml.pytorch.optim.ScheduledModifierManager.from_yaml`` reads.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import yaml

from compression.errors import RecipeError

RECIPE_DIR = Path(__file__).resolve().parent / "recipes"
COMPRESSION_RECIPE = "obert_mobilebert_compression_recipe.yaml"
QUANTIZATION_RECIPE = "obert_mobilebert_quantization_recipe.yaml"

Recipe = dict[str, Any]  # top-level YAML mapping; modifier groups hold lists of RecipeModifier
GRADUAL_PRUNING_TAGS = ("OBSPruningModifier", "GlobalMagnitudePruningModifier", "MagnitudePruningModifier")

# Epoch-valued fields scaled by derive_recipe(epoch_scale=...); -1 means "unset" in sparseml and stays.
_EPOCH_FIELDS = re.compile(r"(^|_)epochs?$|^update_frequency$")


@dataclass
class RecipeModifier:
    """One ``!Tag``-ged modifier entry of a recipe."""

    tag: str
    fields: dict[str, Any]


class _RecipeLoader(yaml.SafeLoader):
    """Safe YAML loader that turns any ``!Tag`` mapping into a :class:`RecipeModifier`."""


def _construct_modifier(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> RecipeModifier:
    if not isinstance(node, yaml.MappingNode):
        raise yaml.constructor.ConstructorError(None, None, f"modifier !{tag_suffix} must be a mapping", node.start_mark)
    return RecipeModifier(tag_suffix, loader.construct_mapping(node, deep=True))


_RecipeLoader.add_multi_constructor("!", _construct_modifier)


class _RecipeDumper(yaml.SafeDumper):
    """Writes :class:`RecipeModifier` objects back as ``!Tag`` mappings, keys in their original order."""


_RecipeDumper.add_representer(
    RecipeModifier, lambda dumper, modifier: dumper.represent_mapping(f"!{modifier.tag}", modifier.fields)
)


def recipe_path(name: str | Path) -> Path:
    """Path of a packaged recipe (by file name, with or without ``.yaml``) or of a recipe file."""
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return candidate
    packaged = RECIPE_DIR / (candidate.name if candidate.suffix else f"{candidate.name}.yaml")
    if packaged.is_file():
        return packaged
    available = ", ".join(sorted(p.name for p in RECIPE_DIR.glob("*.yaml")))
    raise RecipeError(f"recipe {str(name)!r} not found (packaged recipes in {RECIPE_DIR}: {available})")


def load_recipe(name: str | Path) -> Recipe:
    """Parse a packaged recipe (or a recipe file) into a mapping of modifier groups."""
    path = recipe_path(name)
    try:
        recipe = yaml.load(path.read_text(), Loader=_RecipeLoader)
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not a valid recipe YAML file ({exc})") from exc
    if not isinstance(recipe, dict):
        raise RecipeError(f"{path}: expected a mapping of modifier groups at the top level")
    return recipe


def dump_recipe(recipe: Recipe, header: str = "") -> str:
    """Serialise a recipe to YAML that sparseml can load; ``header`` lines are written as comments."""
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return comment + yaml.dump(recipe, Dumper=_RecipeDumper, sort_keys=False, default_flow_style=False)


def iter_modifiers(recipe: Recipe) -> Iterator[tuple[str, RecipeModifier]]:
    """(group name, modifier) for every modifier of the recipe, in file order."""
    for group, entries in recipe.items():
        if isinstance(entries, list):
            for entry in entries:
                if isinstance(entry, RecipeModifier):
                    yield group, entry


def find_modifiers(recipe: Recipe, tag: str) -> list[RecipeModifier]:
    return [modifier for _, modifier in iter_modifiers(recipe) if modifier.tag == tag]


def _pruning_modifier(recipe: Recipe) -> RecipeModifier:
    """The modifier that defines which parameters are sparse: OBS (or magnitude) pruning, else constant pruning."""
    for tag in (*GRADUAL_PRUNING_TAGS, "ConstantPruningModifier"):
        found = find_modifiers(recipe, tag)
        if len(found) > 1:
            raise RecipeError(f"recipe has {len(found)} {tag} entries; expected one")
        if found:
            return found[0]
    raise RecipeError("recipe has neither an OBSPruningModifier nor a ConstantPruningModifier")


def pruned_param_patterns(recipe: Recipe) -> list[str]:
    """The ``params`` list (``re:`` patterns or exact names) of the recipe's pruning modifier."""
    modifier = _pruning_modifier(recipe)
    params = modifier.fields.get("params")
    if not isinstance(params, list) or not params or not all(isinstance(p, str) for p in params):
        raise RecipeError(f"{modifier.tag}.params must be a non-empty list of parameter names/patterns")
    return list(params)


@dataclass(frozen=True)
class PruningTarget:
    """What the recipe's OBSPruningModifier ends with."""

    final_sparsity: float
    mask_type: str
    global_sparsity: bool


def pruning_target(recipe: Recipe) -> PruningTarget:
    """Final sparsity, mask type and global/per-layer ranking of the recipe's gradual pruning modifier."""
    found = [m for tag in GRADUAL_PRUNING_TAGS for m in find_modifiers(recipe, tag)]
    if len(found) != 1:
        raise RecipeError(f"expected exactly one gradual pruning modifier ({' or '.join(GRADUAL_PRUNING_TAGS)}) in "
                          f"the recipe, found {len(found)}")
    fields = found[0].fields
    if found[0].tag == "GlobalMagnitudePruningModifier":  # global by definition
        fields = {**fields, "global_sparsity": True}
    try:
        return PruningTarget(
            final_sparsity=float(fields["final_sparsity"]),
            mask_type=str(fields.get("mask_type", "unstructured")),
            global_sparsity=bool(fields.get("global_sparsity", False)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise RecipeError(f"OBSPruningModifier: invalid or missing final_sparsity ({exc})") from exc


_LAYER_NAME = re.compile(r"^(?P<prefix>.+)\.(?P<index>\d+)$")


def dropped_layers(recipe: Recipe) -> list[str]:
    """Module names listed by the recipe's LayerPruningModifier (empty if it has none)."""
    layers: list[str] = []
    for modifier in find_modifiers(recipe, "LayerPruningModifier"):
        value = modifier.fields.get("layers", [])
        if not isinstance(value, list):
            raise RecipeError("LayerPruningModifier.layers must be a list of module names")
        layers.extend(str(name) for name in value)
    return layers


def kept_layer_count(recipe: Recipe) -> int:
    """How many leading encoder layers survive the recipe's LayerPruningModifier.

    The dropped layers must be a contiguous tail ``k, k+1, ..., n-1`` of one ModuleList (that is what
    makes dropping them equivalent to keeping the first ``k``); anything else is rejected.
    """
    names = dropped_layers(recipe)
    if not names:
        raise RecipeError("the recipe has no LayerPruningModifier: nothing says how many layers to keep")
    matches = [_LAYER_NAME.match(name) for name in names]
    if not all(matches) or len({m["prefix"] for m in matches}) != 1:
        raise RecipeError(f"LayerPruningModifier.layers {names} are not indexed layers of one module list")
    indices = sorted(int(m["index"]) for m in matches)
    if indices != list(range(indices[0], indices[0] + len(indices))):
        raise RecipeError(f"LayerPruningModifier.layers {names} are not a contiguous range of layers")
    return indices[0]


def canonical_param_name(name: str) -> str:
    """Parameter name with sparseml/torch ``QuantWrapper`` levels (``.module.``) removed.

    After QAT preparation ``...query.weight`` lives at ``...query.module.weight``; recipes (and this
    package) refer to the unwrapped name. MobileBERT has no real submodule called ``module``.
    """
    return name.replace(".module.", ".")


def name_matches(name: str, patterns: list[str]) -> bool:
    """True if ``name`` matches one of ``patterns``, with sparseml's semantics: ``re:`` patterns are
    applied with :func:`re.match` (anchored at the start only), other entries must be equal."""
    for pattern in patterns:
        if pattern.startswith("re:"):
            if re.match(pattern[3:], name):
                return True
        elif name == pattern:
            return True
    return False


def match_params(model: torch.nn.Module, patterns: list[str]) -> list[str]:
    """Exact names of the model's parameters matched by the recipe ``patterns``, in model order.

    Names are returned as they exist in ``model`` (usable with ``model.get_parameter``); matching is done
    on :func:`canonical_param_name`, so a QAT-wrapped model matches like the plain one. Every pattern
    must match at least one parameter, as with sparseml's ``params_strict``.
    """
    names = [name for name, _ in model.named_parameters()]
    matched = [name for name in names if name_matches(canonical_param_name(name), patterns)]
    unmatched = [p for p in patterns if not any(name_matches(canonical_param_name(n), [p]) for n in names)]
    if unmatched:
        raise RecipeError(f"recipe parameter pattern(s) match no parameter of the model: {', '.join(unmatched)}")
    return matched


# Fields a (Global)MagnitudePruningModifier shares with the OBSPruningModifier it replaces; the rest (num_grads,
# damp, fisher_block_size, grad_sampler_kwargs, global_sparsity) are OBS-only.
SHARED_PRUNING_FIELDS = ("params", "init_sparsity", "final_sparsity", "start_epoch", "end_epoch",
                         "update_frequency", "inter_func", "mask_type")
# obs: the recipe as published; magnitude: global magnitude ranking across all listed matrices (sparseml's
# GlobalMagnitudePruningModifier); magnitude-layer: each listed matrix pruned to the target on its own magnitudes
# (MagnitudePruningModifier), which matrices of different scale need
PRUNING_METHODS = ("obs", "magnitude", "magnitude-layer")
MAGNITUDE_MODIFIERS = {"magnitude": "GlobalMagnitudePruningModifier", "magnitude-layer": "MagnitudePruningModifier"}


def swap_obs_for_magnitude(recipe: Recipe, method: str = "magnitude") -> str:
    """Replace the recipe's OBSPruningModifier by the magnitude modifier of ``method`` (global or per layer) with
    the same parameters, mask, sparsities and schedule (in place); returns what was changed, for the derived
    recipe's header."""
    tag = MAGNITUDE_MODIFIERS[method]
    replaced = 0
    for entries in recipe.values():
        if not isinstance(entries, list):
            continue
        for index, modifier in enumerate(entries):
            if isinstance(modifier, RecipeModifier) and modifier.tag == "OBSPruningModifier":
                fields = {k: modifier.fields[k] for k in SHARED_PRUNING_FIELDS if k in modifier.fields}
                entries[index] = RecipeModifier(tag, fields)
                replaced += 1
    if replaced != 1:
        raise RecipeError(f"expected one OBSPruningModifier to replace by magnitude pruning, found {replaced}")
    return (f"replaced OBSPruningModifier by {tag} (same params, mask, sparsities and schedule; "
            f"{'per-matrix' if method == 'magnitude-layer' else 'global'} magnitude scores instead of second-order ones)")


def translate_for_family(recipe: Recipe, target: torch.nn.Module) -> list[str]:
    """Rewrite a recipe written for MobileBERT for ``target``'s family (in place); returns the changes.

    Parameter and module names get the family's base-model prefix; parameter patterns that match nothing
    in ``target`` (MobileBERT's bottleneck and stacked-FFN weights in a BERT) are dropped; the
    LayerPruningModifier is removed when the family does not drop layers."""
    from compression.families import RECIPE_FAMILY, family_of, translate_name

    family = family_of(target)
    if family == RECIPE_FAMILY:
        return []
    changes = [f"renamed {RECIPE_FAMILY.base_prefix}.* to {family.base_prefix}.* in every params/submodules list "
               f"(the recipe is written for {RECIPE_FAMILY.name}, the model is a {family.name})"]
    names = [canonical_param_name(name) for name, _ in target.named_parameters()]
    for group, entries in list(recipe.items()):
        if not isinstance(entries, list):
            continue
        kept_entries = []
        for entry in entries:
            if isinstance(entry, RecipeModifier) and entry.tag == "LayerPruningModifier" and not family.drops_layers:
                changes.append(f"removed LayerPruningModifier from {group}: layer dropping is {RECIPE_FAMILY.name}'s "
                               f"(first 14 of 24 layers) and is not applied to a {family.name} model")
                continue
            kept_entries.append(entry)
            if not isinstance(entry, RecipeModifier):
                continue
            for key in ("params", "submodules"):
                value = entry.fields.get(key)
                if isinstance(value, list):
                    entry.fields[key] = [translate_name(str(name), family) for name in value]
            params = entry.fields.get("params")
            if isinstance(params, list):
                present = [p for p in params if any(name_matches(n, [p]) for n in names)]
                absent = [p for p in params if p not in present]
                if not present:
                    raise RecipeError(f"{entry.tag}.params: none of {params} names a parameter of the {family.name} model")
                if absent:
                    entry.fields["params"] = present
                    changes.append(f"{entry.tag}: dropped {len(absent)} pattern(s) naming {RECIPE_FAMILY.name}-only "
                                   f"modules: {', '.join(absent)}")
        recipe[group] = kept_entries
    return changes


def derive_recipe(
    source: str | Path | Recipe,
    out_path: Path,
    *,
    drop_layer_pruning: bool = True,
    epoch_scale: float | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
    reason: str = "",
    target: torch.nn.Module | None = None,
    pruning_method: str = "obs",
) -> Path:
    """Write a runtime variant of a recipe to ``out_path`` and return that path.

    ``drop_layer_pruning`` removes the LayerPruningModifier. The pipeline drops encoder layers
    directly (:func:`compression.architecture.drop_layers`) before anything else, so on the models it
    hands to sparseml the listed layers (``mobilebert.encoder.layer.14`` ...) no longer exist: the
    modifier would fail to find them, and even on a full model it would only repeat the drop (and it
    restores the layers once its end_epoch is reached).

    ``epoch_scale`` multiplies every epoch-valued field (``*_epoch``, ``cycle_epochs``,
    ``update_frequency``; -1 stays -1) for short smoke runs that keep the schedule's shape.

    ``overrides`` maps a modifier tag to fields to set on every modifier with that tag (e.g.
    ``{"OBSPruningModifier": {"num_grads": 16}}`` for a smoke run); a tag the recipe lacks is an error.

    ``target``: the model the recipe will run on; a model of another family than MobileBERT gets the
    recipe translated for it (:func:`translate_for_family`). ``pruning_method`` ``"magnitude"`` (global) or
    ``"magnitude-layer"`` (per matrix) swaps the OBS pruning for magnitude pruning with everything else equal
    (:func:`swap_obs_for_magnitude`).
    """
    if pruning_method not in PRUNING_METHODS:
        raise RecipeError(f"pruning method {pruning_method!r}: expected one of {', '.join(PRUNING_METHODS)}")
    if isinstance(source, (str, Path)):
        path = recipe_path(source)
        origin = path.name if path.parent == RECIPE_DIR else str(path)  # packaged: the name says it all
        recipe = load_recipe(source)
    else:
        origin = "an in-memory recipe"
        recipe = copy.deepcopy(source)
    changes: list[str] = translate_for_family(recipe, target) if target is not None else []

    if drop_layer_pruning:
        for group, entries in list(recipe.items()):
            if isinstance(entries, list):
                kept = [e for e in entries if not (isinstance(e, RecipeModifier) and e.tag == "LayerPruningModifier")]
                if len(kept) != len(entries):
                    recipe[group] = kept
                    changes.append(f"removed LayerPruningModifier from {group} (layers are dropped directly)")

    if epoch_scale is not None:
        if epoch_scale <= 0:
            raise RecipeError(f"epoch_scale must be positive, got {epoch_scale}")
        for _, modifier in iter_modifiers(recipe):
            for key, value in modifier.fields.items():
                if _EPOCH_FIELDS.search(key) and isinstance(value, (int, float)) and value != -1:
                    modifier.fields[key] = float(value) * epoch_scale
        changes.append(f"scaled all epoch fields by {epoch_scale}")

    for tag, fields in (overrides or {}).items():
        targets = find_modifiers(recipe, tag)
        if not targets:
            raise RecipeError(f"recipe override for {tag}: the recipe has no {tag}")
        for modifier in targets:
            modifier.fields.update(fields)
        changes.append(f"set {', '.join(f'{k}={v}' for k, v in fields.items())} on {tag}")

    if pruning_method in MAGNITUDE_MODIFIERS:
        changes.append(swap_obs_for_magnitude(recipe, pruning_method))

    header = "\n".join(
        [f"Derived from {origin}", *(f"- {change}" for change in changes or ["unchanged"])]
        + ([f"Why: {reason}"] if reason else [])
    )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(dump_recipe(recipe, header=header))
    return out_path


def dense_recipe(epochs: float, learning_rate: float) -> Recipe:
    """Recipe of a dense fine-tuning (a teacher, an experiment's starting model): a linear LR decay, nothing else."""
    return {"training_modifiers": [
        RecipeModifier("EpochRangeModifier", {"start_epoch": 0.0, "end_epoch": float(epochs)}),
        RecipeModifier("LearningRateFunctionModifier", {"start_epoch": 0.0, "end_epoch": float(epochs),
                                                        "lr_func": "linear", "init_lr": learning_rate,
                                                        "final_lr": 0.0}),
    ]}
