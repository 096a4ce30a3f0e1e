"""Tests of the compression building blocks and the untrained benchmark models.

Most tests use the ``tiny`` preset (seconds). One session-scoped fixture builds the real-geometry default
``sparse-int8`` model (about two minutes on 2 cores: the INT8 ONNX conversion and the DeepSparse compile
dominate) and checks it the way the harness relies on; set ``OBERT_SKIP_REAL_BUILD=1`` to leave it out.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from compression.architecture import PRESETS, build_model, drop_layers, encoder_layer_count, make_config
from compression.benchmark_model import (
    VARIANTS,
    build_benchmark_model,
    build_benchmark_model_detailed,
    default_model_dir,
    layers_to_keep,
)
from compression.errors import CompressionError, ExportError, OutputExistsError, RecipeError
from compression.export import UNTRAINED_WARNING, export_model_dir
from compression.recipes import (
    COMPRESSION_RECIPE,
    QUANTIZATION_RECIPE,
    RECIPE_DIR,
    RecipeModifier,
    canonical_param_name,
    derive_recipe,
    find_modifiers,
    kept_layer_count,
    load_recipe,
    match_params,
    pruned_param_patterns,
    pruning_target,
)
from compression.sparsity import (
    apply_masks,
    block4_magnitude_masks,
    plot_sparsity_heatmap,
    sparsity_report,
)
from compression.synthetic import synthetic_qa_batch
from compression.tolerances import FLOAT64_FLOOR_FACTOR, TOLERANCES
from compression.verify import verify_model_dir

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_VOCAB_CANDIDATES = (
    REPO_ROOT.parent / "shared" / "data" / "bert-uncased-vocab.txt",
    Path("/work/shared/data/bert-uncased-vocab.txt"),
)
INT8_OPS = {"MatMulInteger", "QLinearMatMul"}

# The published google/mobilebert-uncased config.json (the preset must reproduce it exactly).
PUBLISHED_MOBILEBERT_UNCASED = {
    "attention_probs_dropout_prob": 0.1,
    "classifier_activation": False,
    "embedding_size": 128,
    "hidden_act": "relu",
    "hidden_dropout_prob": 0.0,
    "hidden_size": 512,
    "initializer_range": 0.02,
    "intermediate_size": 512,
    "intra_bottleneck_size": 128,
    "key_query_shared_bottleneck": True,
    "layer_norm_eps": 1e-12,
    "max_position_embeddings": 512,
    "normalization_type": "no_norm",
    "num_attention_heads": 4,
    "num_feedforward_networks": 4,
    "num_hidden_layers": 24,
    "pad_token_id": 0,
    "trigram_input": True,
    "true_hidden_size": 128,
    "type_vocab_size": 2,
    "use_bottleneck": True,
    "use_bottleneck_attention": False,
    "vocab_size": 30522,
}


@pytest.fixture(scope="session")
def vocab(tmp_path_factory) -> Path:
    """The BERT uncased vocab from shared/ when present, else a synthetic one of the same size."""
    data_dir = os.environ.get("OBERT_DATA_DIR")  # the harness tests' data directory setting
    configured = [Path(data_dir) / "bert-uncased-vocab.txt", Path(data_dir) / "vocab.txt"] if data_dir else []
    for candidate in configured + list(SHARED_VOCAB_CANDIDATES):
        if candidate.is_file():
            return candidate
    tokens = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += [f"tok{i}" for i in range(30522 - len(tokens))]
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(tokens) + "\n")
    return path


def _embedding_state(model) -> dict[str, torch.Tensor]:
    """Embedding parameters by their plain names (QAT wrapper levels removed; observers ignored)."""
    return {canonical_param_name(n): p.detach().clone() for n, p in model.mobilebert.embeddings.named_parameters()}


def _assert_bit_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# --------------------------------------------------------------------------------------------- architecture


def test_mobilebert_preset_is_the_published_config():
    config = make_config("mobilebert-uncased")
    for key, value in PUBLISHED_MOBILEBERT_UNCASED.items():
        assert getattr(config, key) == value, key
    # transformers' defaults agree except classifier_activation (pooler only; unused by the QA head)
    from transformers import MobileBertConfig

    defaults = MobileBertConfig()
    differing = {k for k, v in PUBLISHED_MOBILEBERT_UNCASED.items() if getattr(defaults, k) != v}
    assert differing == {"classifier_activation"}


def test_tiny_preset_keeps_every_recipe_parameter_pattern():
    model = build_model("tiny")
    patterns = pruned_param_patterns(load_recipe(COMPRESSION_RECIPE))
    names = match_params(model, patterns)  # raises if any pattern matches nothing
    assert len(names) == len(patterns) * PRESETS["tiny"].num_layers
    assert all(model.get_parameter(n).shape[1] % 4 == 0 for n in names)


def test_build_model_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first = build_model("tiny", seed=7)
    assert torch.equal(torch.rand(1), expected_next)
    second = build_model("tiny", seed=7)
    other = build_model("tiny", seed=8)
    for (name, a), (_, b), (_, c) in zip(
        first.state_dict().items(), second.state_dict().items(), other.state_dict().items()
    ):
        assert torch.equal(a, b), name
    assert not torch.equal(first.qa_outputs.weight, other.qa_outputs.weight)
    assert not first.training


def test_drop_layers_keeps_leading_layers_and_embeddings():
    model = build_model("tiny", seed=1)
    embeddings = _embedding_state(model)
    layer1 = copy.deepcopy(model.mobilebert.encoder.layer[1].state_dict())
    assert drop_layers(model, 2) is model
    assert encoder_layer_count(model) == 2 and model.config.num_hidden_layers == 2
    _assert_bit_identical(embeddings, _embedding_state(model))
    _assert_bit_identical(layer1, model.mobilebert.encoder.layer[1].state_dict())
    with pytest.raises(CompressionError, match="cannot keep 3 encoder layers"):
        drop_layers(model, 3)
    with pytest.raises(CompressionError):
        drop_layers(model, 0)


def test_drop_layers_equals_sparseml_layer_pruning_modifier():
    from compression.quantize import load_manager
    from compression.sparseml_logging import sparseml_loggers

    dropped = drop_layers(build_model("tiny", seed=3), 2)
    pruned = build_model("tiny", seed=3)
    recipe = {
        "pruning_modifiers": [
            RecipeModifier(
                "LayerPruningModifier",
                {
                    "start_epoch": 0.0,
                    "end_epoch": -1,
                    "layers": ["mobilebert.encoder.layer.2", "mobilebert.encoder.layer.3"],
                },
            )
        ]
    }
    load_manager(recipe).apply(pruned, epoch=0.0, finalize=False, loggers=sparseml_loggers())
    batch = synthetic_qa_batch(2, 64, seed=5)
    with torch.no_grad():
        a, b = dropped(**batch), pruned(**batch)
    assert torch.equal(a.start_logits, b.start_logits) and torch.equal(a.end_logits, b.end_logits)


# --------------------------------------------------------------------------------------------------- recipes


def test_recipes_are_read_from_the_packaged_files():
    compression, quantization = load_recipe(COMPRESSION_RECIPE), load_recipe(QUANTIZATION_RECIPE)
    patterns = pruned_param_patterns(compression)
    assert len(patterns) == 15 and all(p.startswith("re:mobilebert.encoder.layer.") for p in patterns)
    # the quantization recipe holds the masks of exactly the parameters the compression recipe prunes
    assert pruned_param_patterns(quantization) == patterns
    target = pruning_target(compression)
    assert (target.final_sparsity, target.mask_type, target.global_sparsity) == (0.5, "block4", True)
    assert kept_layer_count(compression) == kept_layer_count(quantization) == 14
    assert layers_to_keep("mobilebert-uncased") == 14


def test_match_params_agrees_with_sparseml_and_rejects_unmatched_patterns():
    from sparseml.pytorch.utils.helpers import get_named_layers_and_params_by_regex

    model = drop_layers(build_model("mobilebert-uncased"), 14)
    patterns = pruned_param_patterns(load_recipe(COMPRESSION_RECIPE))
    ours = match_params(model, patterns)
    found = get_named_layers_and_params_by_regex(model, patterns, params_strict=True)
    theirs = [f"{p.layer_name}.{p.param_name}" for p in found]
    assert sorted(ours) == sorted(theirs)
    assert len(ours) == 14 * 15
    assert not any("embedding" in n or "qa_outputs" in n for n in ours)
    with pytest.raises(RecipeError, match=r"re:mobilebert\.encoder\.layer\.\*\.nonexistent"):
        match_params(model, [*patterns, "re:mobilebert.encoder.layer.*.nonexistent.weight"])


def test_derive_recipe_drops_layer_pruning_and_sparseml_loads_it(tmp_path):
    from compression.quantize import load_manager

    packaged = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in RECIPE_DIR.glob("*.yaml")}
    derived_path = derive_recipe(QUANTIZATION_RECIPE, tmp_path / "q.yaml", reason="test")
    derived, original = load_recipe(derived_path), load_recipe(QUANTIZATION_RECIPE)
    assert not find_modifiers(derived, "LayerPruningModifier")
    kept = [m for group in original.values() for m in group if m.tag != "LayerPruningModifier"]
    assert [(m.tag, m.fields) for group in derived.values() for m in group] == [(m.tag, m.fields) for m in kept]
    assert derived_path.read_text().startswith("# Derived from")
    modifiers = [type(m).__name__ for m in load_manager(derived_path).iter_modifiers()]
    assert "QuantizationModifier" in modifiers and "ConstantPruningModifier" in modifiers
    assert "LayerPruningModifier" not in modifiers

    scaled = load_recipe(derive_recipe(COMPRESSION_RECIPE, tmp_path / "c.yaml", epoch_scale=0.1))
    obs = find_modifiers(scaled, "OBSPruningModifier")[0].fields
    assert obs["start_epoch"] == pytest.approx(0.2) and obs["end_epoch"] == pytest.approx(2.8)
    assert obs["update_frequency"] == pytest.approx(0.2)
    assert find_modifiers(scaled, "LearningRateFunctionModifier")[1].fields["cycle_epochs"] == pytest.approx(0.2)
    # the packaged recipes are never touched
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in RECIPE_DIR.glob("*.yaml")} == packaged


# -------------------------------------------------------------------------------------------------- sparsity


@pytest.mark.parametrize("global_", [True, False])
def test_block4_masks_equal_sparseml_four_block_mask_creator(global_):
    from sparseml.pytorch.sparsification.pruning.mask_creator import FourBlockMaskCreator

    model = drop_layers(build_model("tiny", seed=11), 2)
    names = match_params(model, pruned_param_patterns(load_recipe(COMPRESSION_RECIPE)))
    ours = block4_magnitude_masks(model, names, 0.5, global_=global_)
    # sparseml's magnitude scorer scores |w|; FourBlockMaskCreator averages the scores of each block
    theirs = FourBlockMaskCreator().create_sparsity_masks(
        [model.get_parameter(n).detach().abs() for n in names], 0.5, global_sparsity=global_
    )
    for name, expected in zip(names, theirs):
        assert torch.equal(ours[name], expected), name


def test_sparsity_report_and_block_alignment():
    model = drop_layers(build_model("tiny", seed=2), 2)
    names = match_params(model, pruned_param_patterns(load_recipe(COMPRESSION_RECIPE)))
    apply_masks(model, block4_magnitude_masks(model, names, 0.5))
    report = sparsity_report(model, names)
    assert report["global_sparsity"] == pytest.approx(0.5, abs=4 / report["total_weights"])
    assert report["block4_aligned"] and report["zeros_outside_zero_blocks"] == 0
    assert set(report["params"]) == set(names)
    # per-layer sparsity varies under global ranking, the total does not
    assert len({round(p["sparsity"], 3) for p in report["params"].values()}) > 1
    with torch.no_grad():  # one stray zero breaks the pattern
        weight = model.get_parameter(names[0])
        row, col = (weight != 0).nonzero()[0].tolist()
        weight[row, col] = 0.0
    broken = sparsity_report(model, names)
    assert not broken["block4_aligned"] and broken["zeros_outside_zero_blocks"] == 1


def test_sparsity_heatmap_is_a_png(tmp_path):
    model = drop_layers(build_model("tiny", seed=2), 2)
    names = match_params(model, pruned_param_patterns(load_recipe(COMPRESSION_RECIPE)))
    apply_masks(model, block4_magnitude_masks(model, names, 0.5))
    path = plot_sparsity_heatmap(sparsity_report(model, names), tmp_path / "heat.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_qat_training_mode_keeps_masks_fixed(tmp_path):
    """The training pipeline's path: QAT from the derived recipe, optimizer steps, masks unchanged."""
    from compression.quantize import is_qat_model, prepare_qat
    from compression.synthetic import synthetic_qa_batches

    model = drop_layers(build_model("tiny", seed=4), 2)
    patterns = pruned_param_patterns(load_recipe(COMPRESSION_RECIPE))
    names = match_params(model, patterns)
    apply_masks(model, block4_magnitude_masks(model, names, 0.5))
    zero_before = {name: (model.get_parameter(name) == 0).clone() for name in names}
    recipe = derive_recipe(QUANTIZATION_RECIPE, tmp_path / "q.yaml")
    model.train()
    manager = prepare_qat(model, recipe, one_shot=False)
    assert is_qat_model(model) and model.training
    optimizer = manager.modify(model, torch.optim.AdamW(model.parameters(), lr=1e-3), steps_per_epoch=2)
    for batch in synthetic_qa_batches(3, 2, 64):
        loss = model(**batch, start_positions=torch.tensor([3, 5]), end_positions=torch.tensor([6, 9])).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    manager.finalize(model)
    for name, param in model.named_parameters():
        plain = canonical_param_name(name)
        if plain in zero_before:
            assert torch.equal(param == 0, zero_before[plain]), plain
    assert sparsity_report(model, match_params(model, patterns))["block4_aligned"]


# ---------------------------------------------------------------------------------------------------- export


def test_export_refuses_non_empty_dir_and_mismatched_precision(tmp_path, vocab):
    model = build_model("tiny")
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="overwrite"):
        export_model_dir(model, occupied, vocab=vocab, quantized=False, manifest={"trained": False})
    assert [p.name for p in occupied.iterdir()] == ["keep.txt"]
    with pytest.raises(ExportError, match="fake-quantize"):
        export_model_dir(model, tmp_path / "int8", vocab=vocab, quantized=True, manifest={"trained": False})
    with pytest.raises(CompressionError, match="trained"):
        export_model_dir(model, tmp_path / "x", vocab=vocab, quantized=False, manifest={})
    with pytest.raises(CompressionError, match="does not exist"):
        export_model_dir(model, tmp_path / "x", vocab=tmp_path / "missing.txt", quantized=False,
                         manifest={"trained": False})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["occupied"]  # no staging leftovers


def test_failed_publish_leaves_nothing_behind(tmp_path, vocab):
    def veto(staged: Path) -> None:
        assert (staged / "model.onnx").is_file() and (staged / "manifest.json").is_file()
        raise CompressionError("vetoed")

    with pytest.raises(CompressionError, match="vetoed"):
        export_model_dir(
            build_model("tiny"), tmp_path / "out", vocab=vocab, quantized=False, manifest={"trained": False},
            before_publish=veto,
        )
    assert list(tmp_path.iterdir()) == []


def test_export_pretrained_dir_for_hub_checkpoints(tmp_path, vocab):
    from compression.export import export_pretrained_dir, load_vocab_tokenizer
    from harness.models import inspect_onnx_model

    checkpoint = tmp_path / "checkpoint"
    build_model("tiny").save_pretrained(checkpoint)
    load_vocab_tokenizer(vocab).save_pretrained(checkpoint)
    out = export_pretrained_dir(checkpoint, tmp_path / "onnx", sequence_length=128)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["trained"] is None and manifest["precision"] == "fp32" and "warning" not in manifest
    info = inspect_onnx_model(out / "model.onnx")
    assert info.sequence_length == 128 and info.trained is None
    assert verify_model_dir(out, check_deepsparse=False)["passed"]


# ------------------------------------------------------------------------------------------ tiny end to end


@pytest.fixture(scope="module")
def tiny_sparse_int8(tmp_path_factory, vocab):
    out = tmp_path_factory.mktemp("tiny") / "sparse-int8"
    return build_benchmark_model_detailed(out, vocab=vocab, variant="sparse-int8", preset="tiny", seed=5)


def _assert_untrained_manifest(manifest: dict) -> None:
    assert manifest["trained"] is False
    assert manifest["warning"] == UNTRAINED_WARNING
    assert "meaningless" in manifest["warning"] and "valid" in manifest["warning"]
    assert manifest["input_names"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert manifest["output_names"] == ["start_logits", "end_logits"]
    assert manifest["sequence_length"] == 384


def test_tiny_sparse_int8_model_dir(tiny_sparse_int8):
    out = tiny_sparse_int8.out_dir
    manifest = json.loads((out / "manifest.json").read_text())
    _assert_untrained_manifest(manifest)
    assert manifest["precision"] == "int8" and manifest["block_pattern"] == "block4"
    assert manifest["num_layers"] == 2 and manifest["num_layers_original"] == 4
    assert manifest["sparsity"] == pytest.approx(0.5, abs=0.005)
    assert manifest["name"] == "obert-mobilebert-2l-50pct-block4-int8-untrained-tiny"
    assert "UNTRAINED" in (out / "README.md").read_text()
    for name in ("model.onnx", "config.json", "tokenizer.json", "vocab.txt", "verify.json", "sparsity_heatmap.png"):
        assert (out / name).is_file(), name
    recipe = load_recipe(out / "quantization_recipe.yaml")
    assert not find_modifiers(recipe, "LayerPruningModifier") and find_modifiers(recipe, "QuantizationModifier")

    verification = json.loads((out / "verify.json").read_text())
    assert verification["passed"] and verification["model_dir"] == str(out)
    checks = verification["checks"]
    assert checks["matmul_ops"]["ops_for_listed_params"] == {"MatMulInteger": 30}
    assert checks["weight_sparsity"]["torch_zero_blocks_lost"] == 0
    assert checks["ort_vs_torch"]["passed"] is True
    assert checks["deepsparse_vs_ort"]["passed"] in (True, None)
    # the QDQ form beside it, verified the same way, and run by OpenVINO with 8-bit matmuls
    assert manifest["qdq"] == {"onnx_file": "model-qdq.onnx", "weight_layout": "out_in"} and (out / "model-qdq.onnx").is_file()
    assert manifest["packed"]["qdq_onnx_file"] == "model-packed-qdq.onnx" and (out / "model-packed-qdq.onnx").is_file()
    assert checks["qdq_matmul_ops"]["ops_for_listed_params"] == {"DequantizeLinear+MatMul": 30}
    assert checks["qdq_weight_sparsity"]["passed"] and checks["qdq_weight_sparsity"]["torch_zero_blocks_lost"] == 0
    assert checks["qdq_ort_vs_torch"]["passed"] is True
    assert checks["openvino_vs_ort"]["passed"] is True and checks["openvino_vs_ort"]["onnx_file"] == "model-qdq.onnx"
    ov_int8 = checks["openvino_int8_matmuls"]
    assert ov_int8["passed"] is True and ov_int8["quantized_linears"] == 32  # the 30 pruned, the embedding's and the head
    assert ov_int8["executed"]["int8_matmuls"] == ov_int8["executed"]["matmul_nodes"] > 0
    assert ov_int8["float_weight_matmuls"] == ov_int8["float_linears"] == 0


def test_the_integer_form_is_what_sparseml_converts_and_the_qdq_form_holds_the_same_integers(tiny_sparse_int8, tmp_path):
    """model.onnx is exactly sparseml's convert_qat=True export (DeepSparse runs what it ran before the QDQ form
    existed), and each weight of the QDQ form holds the very integers of the MatMulInteger form."""
    import onnx
    from onnx import numpy_helper
    from sparseml.pytorch.utils import ModuleExporter

    from compression.quantize import weights_snapped_to_quantized_values
    from compression.graph_checks import QDQ_MATMUL_OP, onnx_linear_weights

    model = tiny_sparse_int8.prepared.model.eval()
    sample = synthetic_qa_batch(1, 384, vocab_size=model.config.vocab_size, seed=0)
    with weights_snapped_to_quantized_values(model):
        ModuleExporter(model, output_dir=str(tmp_path)).export_onnx(
            sample, name="sparseml.onnx", opset=14, convert_qat=True, input_names=list(sample),
            output_names=["start_logits", "end_logits"], dynamo=False)
    theirs = onnx.load(str(tmp_path / "sparseml.onnx")).graph
    ours = onnx.load(str(tiny_sparse_int8.out_dir / "model.onnx")).graph
    assert [(n.op_type, n.name, list(n.input)) for n in ours.node] == [(n.op_type, n.name, list(n.input)) for n in theirs.node]
    values = {init.name: numpy_helper.to_array(init) for init in theirs.initializer}
    assert all(np.array_equal(numpy_helper.to_array(init), values[init.name]) for init in ours.initializer)

    qdq = onnx.load(str(tiny_sparse_int8.out_dir / "model-qdq.onnx"))
    qdq_values = {init.name: numpy_helper.to_array(init) for init in qdq.graph.initializer}
    integer_weights = onnx_linear_weights(onnx.load(str(tiny_sparse_int8.out_dir / "model.onnx")))
    checked = 0
    for name, ref in onnx_linear_weights(qdq).items():
        assert ref.node_op == QDQ_MATMUL_OP, name
        stored = qdq_values[ref.initializer]
        assert stored.dtype == np.int8 and ref.zero_point == 0  # symmetric int8 weights, as the recipe quantizes
        # sparseml's integer form shifts int8 weights to uint8 (+128, zero point 128)
        shifted = (stored.astype(np.int32) + 128).astype(np.uint8)
        if not ref.transposed:  # the QDQ form keeps torch's [out, in]; the integer form's MatMulInteger takes [in, out]
            shifted = shifted.T
        np.testing.assert_array_equal(shifted, values[integer_weights[name].initializer], err_msg=name)
        checked += 1
    assert checked == 32


def _planted_copy(tiny_sparse_int8, tmp_path: Path, plant, onnx_file: str = "model-qdq.onnx") -> Path:
    """A copy of the tiny model directory whose ``onnx_file`` ``plant`` (graph -> None) has changed."""
    import shutil

    import onnx

    copy_dir = tmp_path / "planted"
    shutil.copytree(tiny_sparse_int8.out_dir, copy_dir)
    model = onnx.load(str(copy_dir / onnx_file))
    plant(model.graph)
    onnx.save(model, str(copy_dir / onnx_file))
    return copy_dir


@pytest.mark.parametrize("onnx_file, check", [("model.onnx", "weight_sparsity"), ("model-qdq.onnx", "qdq_weight_sparsity")])
def test_a_lost_4_block_in_the_exported_integers_fails_verification(tiny_sparse_int8, tmp_path, onnx_file, check):
    """One zero 4-block of one pruned matrix brought back to life in the integers of either form: one block in
    thousands moves the block sparsity by far less than its tolerance, so only the block-by-block comparison with
    the torch model can see it."""
    from onnx import numpy_helper

    from compression.graph_checks import onnx_linear_weights

    def revive_one_zero_block(graph) -> None:
        import onnx

        ref = onnx_linear_weights(onnx.ModelProto(graph=graph))["mobilebert.encoder.layer.0.intermediate.dense.weight"]
        init = next(i for i in graph.initializer if i.name == ref.initializer)
        stored = numpy_helper.to_array(init)
        weights = stored.T.copy() if ref.transposed else stored.copy()  # [out, in]: blocks of 4 along the input
        row, col = np.argwhere((weights.reshape(weights.shape[0], -1, 4) == ref.zero_point).all(axis=2))[0]
        weights[row, 4 * col:4 * col + 4] = ref.zero_point + 3
        weights = weights.T if ref.transposed else weights
        init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(weights).astype(stored.dtype), init.name))

    planted = _planted_copy(tiny_sparse_int8, tmp_path, revive_one_zero_block, onnx_file)
    result = verify_model_dir(planted, tiny_sparse_int8.prepared.model, check_deepsparse=False, write=False)
    assert check in result["failed_checks"]
    assert result["checks"][check]["torch_zero_blocks_lost"] == 1
    assert result["checks"][check]["block_sparsity"] == pytest.approx(0.5, abs=0.005)  # the aggregate hides it


def test_a_matmul_that_openvino_would_run_in_float_fails_verification(tiny_sparse_int8, tmp_path):
    """Without its activation's QuantizeLinear/DequantizeLinear a Linear keeps its int8 weights, but OpenVINO runs it
    on float activations (weights decompressed): the runtime-graph check must see it."""
    def drop_one_activation_quantization(graph) -> None:
        producers = {output: node for node in graph.node for output in node.output}
        matmul = next(n for n in graph.node if n.name == "/mobilebert/encoder/layer.1/ffn.0/intermediate/dense/module/MatMul")
        dequantize = producers[matmul.input[0]]
        matmul.input[0] = producers[dequantize.input[0]].input[0]

    planted = _planted_copy(tiny_sparse_int8, tmp_path, drop_one_activation_quantization)
    result = verify_model_dir(planted, check_deepsparse=False, write=False)
    assert "openvino_int8_matmuls" in result["failed_checks"]
    check = result["checks"]["openvino_int8_matmuls"]
    assert check["float_weight_matmuls"] == 1 and check["float_linears"] == 0 and check["quantized_linears"] == 32
    assert check["not_int8"] == {"mobilebert.encoder.layer.1.ffn.0.intermediate.dense.weight": "f32"}


def test_tiny_model_embeddings_are_the_initial_ones(tiny_sparse_int8):
    fresh = build_model("tiny", seed=5)  # before any layer dropping
    _assert_bit_identical(_embedding_state(fresh), _embedding_state(tiny_sparse_int8.prepared.model))


def test_harness_reads_the_model_dir(tiny_sparse_int8):
    from harness.models import inspect_onnx_model

    info = inspect_onnx_model(tiny_sparse_int8.out_dir / "model.onnx")
    assert info.trained is False and "UNTRAINED" in info.label
    assert info.sequence_length == 384 and info.batch_size is None
    assert info.input_names == {name: name for name in ("input_ids", "attention_mask", "token_type_ids")}


def test_verify_without_torch_model(tiny_sparse_int8, tmp_path):
    import shutil

    copy_dir = tmp_path / "copy"
    shutil.copytree(tiny_sparse_int8.out_dir, copy_dir)
    result = verify_model_dir(copy_dir, check_deepsparse=False)
    assert result["passed"]
    assert result["checks"]["ort_vs_torch"]["passed"] is None
    assert json.loads((copy_dir / "verify.json").read_text())["passed"]


def test_cli_builds_overwrites_and_reports_errors(tmp_path, vocab, capsys):
    from compression.cli import main

    out = tmp_path / "dense"
    args = ["build-benchmark-model", "--variant", "dense-fp32", "--preset", "tiny", "--vocab", str(vocab),
            "--out-dir", str(out)]
    assert main(args) == 0
    assert capsys.readouterr().out.strip().endswith(str(out))
    manifest = json.loads((out / "manifest.json").read_text())
    _assert_untrained_manifest(manifest)
    assert manifest["precision"] == "fp32" and manifest["sparsity"] == 0.0 and manifest["num_layers"] == 2

    assert main(args) == 1  # refuses to overwrite
    err = capsys.readouterr().err.strip()
    assert err.startswith("obert-compress: error:") and "--overwrite" in err and len(err.splitlines()) == 1
    assert main([*args, "--overwrite", "--seed", "9"]) == 0
    assert json.loads((out / "manifest.json").read_text())["seed"] == 9

    missing_vocab = tmp_path / "nope.txt"
    assert main(["build-benchmark-model", "--preset", "tiny", "--vocab", str(missing_vocab),
                 "--out-dir", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert "nope.txt" in err and "Traceback" not in err


def test_default_model_dir_names():
    assert {variant: default_model_dir(variant).as_posix() for variant in VARIANTS} == {
        "sparse-int8": "models/obert-mobilebert-14l-50pct-block4-int8-untrained",
        "sparse80-int8": "models/obert-mobilebert-14l-80pct-block4-int8-untrained",
        "dense-fp32": "models/mobilebert-14l-dense-fp32-untrained",
        "dense-fp32-24l": "models/mobilebert-24l-dense-fp32-untrained",
    }
    assert default_model_dir("dense-fp32", Path("/x"), preset="tiny") == Path("/x/mobilebert-2l-dense-fp32-untrained-tiny")


def test_the_80pct_variant_prunes_to_80pct_in_4_blocks(tmp_path):
    from compression.benchmark_model import prepare_benchmark_model

    prepared = prepare_benchmark_model("sparse80-int8", preset="tiny", seed=5, work_dir=tmp_path)
    details = prepared.manifest["sparsity_details"]
    assert details["target"] == 0.8 and prepared.manifest["name"].startswith("obert-mobilebert-2l-80pct-block4-int8")
    assert details["achieved"] == pytest.approx(0.8, abs=0.005) and details["block4_aligned"]


# ------------------------------------------------------------------------------ real geometry, default model


@pytest.fixture(scope="session")
def real_sparse_int8(tmp_path_factory, vocab):
    if os.environ.get("OBERT_SKIP_REAL_BUILD") == "1":
        pytest.skip("OBERT_SKIP_REAL_BUILD=1: the real-geometry build (~2 min) is disabled")
    out = tmp_path_factory.mktemp("real") / "obert-mobilebert-14l-50pct-block4-int8-untrained"
    # without the packed variant: its export path is tested on the tiny geometry (test_packing), and the real
    # one's second export would cost this fixture ~half a minute
    return build_benchmark_model_detailed(out, vocab=vocab, variant="sparse-int8", seed=42, packed_variant=False)


def test_real_model_has_14_layers_and_initial_embeddings(real_sparse_int8):
    manifest = json.loads((real_sparse_int8.out_dir / "manifest.json").read_text())
    assert manifest["num_layers"] == 14 and manifest["num_layers_original"] == 24
    assert real_sparse_int8.verification["checks"]["encoder_layers"]["found"] == 14
    model = real_sparse_int8.prepared.model
    assert encoder_layer_count(model) == 14 and model.config.num_hidden_layers == 14
    _assert_bit_identical(_embedding_state(build_model("mobilebert-uncased", seed=42)), _embedding_state(model))


def test_real_model_sparsity_is_50pct_block4_on_exactly_the_recipe_params(real_sparse_int8):
    from sparseml.pytorch.utils.helpers import get_named_layers_and_params_by_regex

    manifest = json.loads((real_sparse_int8.out_dir / "manifest.json").read_text())
    patterns = pruned_param_patterns(load_recipe(COMPRESSION_RECIPE))
    reference = drop_layers(build_model("mobilebert-uncased"), 14)
    expected = [f"{p.layer_name}.{p.param_name}" for p in get_named_layers_and_params_by_regex(reference, patterns)]
    assert manifest["sparsity_details"]["params"] == expected and len(expected) == 210

    model = real_sparse_int8.prepared.model  # QAT-wrapped: names carry ".module."
    report = sparsity_report(model, match_params(model, patterns))
    assert list(report["params"]) == expected
    assert report["global_sparsity"] == pytest.approx(0.5, abs=0.005)
    assert report["block4_aligned"] and report["zeros_outside_zero_blocks"] == 0
    # nothing outside the listed parameters was pruned
    listed = set(match_params(model, patterns))
    for name, param in model.named_parameters():
        if name not in listed and param.dim() == 2 and "embeddings" not in name:
            assert (param != 0).float().mean() > 0.99, name

    exported = real_sparse_int8.verification["checks"]["weight_sparsity"]
    assert exported["passed"] and exported["block_sparsity"] == pytest.approx(0.5, abs=0.005)
    assert exported["torch_zero_blocks_lost"] == 0


def test_real_model_runs_int8_matmuls_for_every_pruned_layer(real_sparse_int8):
    import onnx

    from compression.graph_checks import onnx_linear_weights

    weights = onnx_linear_weights(onnx.load(str(real_sparse_int8.out_dir / "model.onnx")))
    params = json.loads((real_sparse_int8.out_dir / "manifest.json").read_text())["sparsity_details"]["params"]
    assert {weights[name].node_op for name in params} <= INT8_OPS
    assert weights["qa_outputs.weight"].node_op in INT8_OPS  # the recipe quantizes the QA head too


def test_real_model_runtimes_agree_within_tolerance(real_sparse_int8):
    checks = real_sparse_int8.verification["checks"]
    ort = checks["ort_vs_torch"]
    assert ort["passed"], ort
    assert ort["tolerance"]["rtol"] == TOLERANCES["ort_vs_torch"]["int8"].rtol
    assert ort["tolerance"]["mean_rtol"] == TOLERANCES["ort_vs_torch"]["int8"].mean_rtol
    # the untrained model's own numeric floor (PyTorch float64 vs float32) is recorded, and far below the bounds
    floor = real_sparse_int8.verification["numeric_floor"]
    assert 0 <= floor["relative_max_diff"] * FLOAT64_FLOOR_FACTOR < TOLERANCES["ort_vs_torch"]["int8"].rtol
    deepsparse = checks["deepsparse_vs_ort"]
    if deepsparse["passed"] is None:
        pytest.skip(f"DeepSparse cannot run here: {deepsparse['reason']}")
    assert deepsparse["passed"], deepsparse


def test_real_model_dir_is_labelled_untrained_and_not_overwritten(real_sparse_int8, vocab):
    out = real_sparse_int8.out_dir
    _assert_untrained_manifest(json.loads((out / "manifest.json").read_text()))
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with pytest.raises(OutputExistsError):
        build_benchmark_model(out, vocab=vocab, variant="sparse-int8")
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    # an ONNX Runtime session on the published file gives finite logits of the right shape
    import onnxruntime

    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    feed = {k: v.numpy() for k, v in synthetic_qa_batch(3, 384, seed=9).items()}
    start, end = session.run(["start_logits", "end_logits"], feed)
    assert start.shape == end.shape == (3, 384) and np.isfinite(start).all() and np.isfinite(end).all()


def test_a_failed_verification_keeps_its_report_beside_the_target(tmp_path, vocab):
    """The staged copy is deleted when verification vetoes publishing: the error must point at a report that
    still exists, with the figures that failed."""
    from compression.verify import failed_verification_report

    out = tmp_path / "out"
    other = build_model("tiny", seed=7)  # not the exported model: its logits differ

    def verify_staged(staged: Path) -> None:
        verify_model_dir(staged, other, raise_on_failure=True, published_as=out, check_deepsparse=False)

    with pytest.raises(CompressionError, match="verification failed .*ort_vs_torch.*not published; see ") as failure:
        export_model_dir(build_model("tiny", seed=42), out, vocab=vocab, quantized=False, manifest={"trained": False},
                         before_publish=verify_staged)
    report = failed_verification_report(out)
    assert str(report) in str(failure.value) and not out.exists()
    saved = json.loads(report.read_text())
    assert "ort_vs_torch" in saved["failed_checks"] and saved["checks"]["ort_vs_torch"]["max_abs_diff"] > 0
    # a later export that passes removes the stale report
    model = build_model("tiny", seed=42)
    export_model_dir(model, out, vocab=vocab, quantized=False,
                     manifest={"trained": False, "num_layers": model.config.num_hidden_layers},
                     before_publish=lambda staged: verify_model_dir(staged, model, raise_on_failure=True,
                                                                    published_as=out, check_deepsparse=False))
    assert out.is_dir() and not report.exists()


def test_int8_logit_tolerance_bounds_both_the_mean_and_the_worst_logit():
    """A trained INT8 export is ~11% off at its worst logit and ~1.1% on average (rounding flips propagate);
    a scale fault raises the mean, a fault at a few positions the worst logit. FP32 stays tight."""
    from compression.tolerances import compare_logits

    rng = np.random.default_rng(0)
    reference = {name: rng.normal(0.0, 2.0, (2, 384)).astype(np.float32) for name in ("start_logits", "end_logits")}
    scale = max(float(np.abs(v).max()) for v in reference.values())

    def shifted(mean_fraction: float, worst_fraction: float) -> dict[str, np.ndarray]:
        out = {}
        for name, logits in reference.items():
            noise = rng.choice([-1.0, 1.0], logits.shape) * mean_fraction * scale
            noise[0, 5] = worst_fraction * scale
            out[name] = (logits + noise).astype(np.float32)
        return out

    int8 = TOLERANCES["ort_vs_torch"]["int8"]
    assert compare_logits(reference, shifted(0.011, 0.11), int8)["passed"]  # the trained MiniLM's INT8 export
    assert not compare_logits(reference, shifted(0.025, 0.15), int8)["passed"]  # a 1.5x scale fault in one Linear
    worst = compare_logits(reference, shifted(0.002, 0.30), int8)
    assert not worst["passed"] and worst["relative_mean_diff"] < 0.01  # one position far off
    assert not compare_logits(reference, shifted(1e-3, 1e-3), TOLERANCES["ort_vs_torch"]["fp32"])["passed"]


def test_an_int8_models_numeric_floor_widens_its_logit_bounds_only_where_it_is_wider():
    """Two correct evaluations of a rounding-sensitive INT8 model (PyTorch float64 and float32) differ by more than
    the fixed engine bounds (the real-accuracy MiniLM of 2026-12-06: 11.1% at the worst logit, 0.77% mean); the
    bounds follow that floor, the mean bound stays where the floor is below it, and no floor changes nothing."""
    from compression.tolerances import widened_to_floor

    engines, torch_bound = TOLERANCES["openvino_vs_ort"]["int8"], TOLERANCES["ort_vs_torch"]["int8"]
    floor = {"relative_max_diff": 0.1114, "relative_mean_diff": 0.0077}
    widened = widened_to_floor(engines, floor)
    assert widened.rtol == pytest.approx(FLOAT64_FLOOR_FACTOR * 0.1114) and widened.rtol > engines.rtol
    assert widened.mean_rtol == engines.mean_rtol == 0.02  # 2x 0.77% is below it: a scale fault still fails
    assert widened_to_floor(torch_bound, floor) == torch_bound  # 25% / 2% are already wider than 2x the floor
    wider = widened_to_floor(torch_bound, {"relative_max_diff": 0.2, "relative_mean_diff": 0.015})
    assert (wider.atol, wider.rtol, wider.mean_rtol) == pytest.approx((torch_bound.atol, 0.4, 0.03))
    assert widened_to_floor(engines, None) == engines
    assert widened_to_floor(engines, {"relative_max_diff": 0.001, "relative_mean_diff": 0.0001}) == engines


def test_a_float64_copy_of_a_qat_model_computes_the_same_int8_model_and_leaves_the_original(tmp_path):
    from compression.quantize import float64_copy, freeze_observers, prepare_qat
    from compression.synthetic import synthetic_qa_batches

    model = drop_layers(build_model("tiny", seed=4), 2)
    prepare_qat(model, derive_recipe(QUANTIZATION_RECIPE, tmp_path / "q.yaml"),
                calibration_batches=list(synthetic_qa_batches(2, 2, 64)))
    freeze_observers(model)
    twin = float64_copy(model)
    batch = next(iter(synthetic_qa_batches(1, 2, 64, seed=3)))
    with torch.no_grad():
        single, double = model(**batch).start_logits, twin(**batch).start_logits
    assert single.dtype == torch.float32 and double.dtype == torch.float64 and not twin.training
    fake_quants = [(a, b) for a, b in zip(model.modules(), twin.modules()) if isinstance(a, torch.ao.quantization.FakeQuantize)]
    assert fake_quants and all(torch.equal(a.scale.double(), b.scale) and torch.equal(a.zero_point, b.zero_point)
                               and not b.observer_enabled[0] and b.fake_quant_enabled[0] for a, b in fake_quants)
    assert torch.allclose(single.double(), double, atol=0.05 * float(double.abs().max()))


def test_an_export_that_loses_f1_against_its_torch_model_is_not_published(tmp_path, vocab):
    """The held-out F1 check runs on the staged copy before publishing; a drop past the bound vetoes it."""
    from compression.errors import VerificationError
    from compression.tolerances import f1_bound
    from compression.verify import AccuracyCheck, failed_verification_report

    assert f1_bound(1731) == 0.5 and f1_bound(40) == pytest.approx(5.0)  # two questions' worth on small sets
    model = build_model("tiny", seed=42)
    scored: list[Path] = []

    def accuracy(onnx_f1: float) -> AccuracyCheck:
        def evaluate(onnx_path: Path) -> dict:
            assert onnx_path.is_file()
            scored.append(onnx_path)
            return {"f1": onnx_f1, "exact_match": 40.0, "questions": 1731}
        return AccuracyCheck(reference={"f1": 50.0, "exact_match": 41.0, "questions": 1731}, evaluate=evaluate)

    def export(out: Path, onnx_f1: float) -> None:
        export_model_dir(model, out, vocab=vocab, quantized=False,
                         manifest={"trained": True, "num_layers": model.config.num_hidden_layers},
                         before_publish=lambda staged: verify_model_dir(staged, model, raise_on_failure=True,
                                                                        published_as=out, check_deepsparse=False,
                                                                        accuracy=accuracy(onnx_f1)))

    with pytest.raises(VerificationError, match=r"verification failed \(f1_vs_torch\)"):
        export(tmp_path / "worse", 49.4)
    assert not (tmp_path / "worse").exists() and scored[-1].parent != tmp_path / "worse"  # scored while staged
    saved = json.loads(failed_verification_report(tmp_path / "worse").read_text())["checks"]["f1_vs_torch"]
    assert saved["f1_difference"] == pytest.approx(-0.6) and saved["torch"]["f1"] == 50.0
    export(tmp_path / "fine", 49.6)
    check = json.loads((tmp_path / "fine" / "verify.json").read_text())["checks"]["f1_vs_torch"]
    assert check["passed"] and check["bound"] == 0.5 and check["onnx"]["f1"] == 49.6
    assert verify_model_dir(tmp_path / "fine", check_deepsparse=False, write=False)["checks"]["f1_vs_torch"]["passed"] is None
    # a QAT model's reference is the range of its float32 and float64 evaluations: judged by the distance from it
    from compression.verify import _f1_check

    def ranged(onnx_f1: float) -> dict:
        check = accuracy(onnx_f1)
        return _f1_check(tmp_path / "fine" / "model.onnx", AccuracyCheck(
            check.reference, check.evaluate, reference_float64={"f1": 48.0, "exact_match": 39.0, "questions": 1731}))

    assert ranged(49.0)["passed"] and ranged(49.0)["outside_range"] == 0.0 and ranged(49.0)["reference_range"] == [48.0, 50.0]
    assert ranged(47.6)["passed"] and ranged(47.6)["outside_range"] == pytest.approx(0.4)
    assert not ranged(47.4)["passed"] and not ranged(50.6)["passed"]
    assert ranged(47.4)["f1_difference"] == pytest.approx(-2.6)  # still reported against the float32 figure


def test_an_int8_export_holds_exactly_the_integers_the_qat_model_computes_with(tmp_path):
    """sparseml's exporter re-quantizes float weights with its own rounding, one step off PyTorch's on values at
    a rounding tie (on the trained MiniLM: 78 embedding entries, -0.4 held-out F1 in ONNX Runtime). A tie is
    planted in the word embeddings; the export must still hold PyTorch's integer for it."""
    import onnx
    from onnx import numpy_helper
    from sparseml.exporters.transforms.utils import quantize_array

    from compression.export import export_onnx
    from compression.quantize import freeze_observers, prepare_qat
    from compression.synthetic import synthetic_qa_batches

    model = drop_layers(build_model("tiny", seed=4), 2)
    recipe = derive_recipe(QUANTIZATION_RECIPE, tmp_path / "q.yaml")
    prepare_qat(model, recipe, calibration_batches=list(synthetic_qa_batches(2, 2, 64)))
    freeze_observers(model)
    embedding = model.bert.embeddings.word_embeddings if hasattr(model, "bert") else model.mobilebert.embeddings.word_embeddings
    fake_quant = embedding.weight_fake_quant
    scale, zero_point = float(fake_quant.scale), int(fake_quant.zero_point)

    def torch_integer(value: np.float32) -> int:
        quantized = torch.fake_quantize_per_tensor_affine(torch.tensor([value]), scale, zero_point,
                                                          fake_quant.quant_min, fake_quant.quant_max)
        return round(float(quantized[0]) / scale)

    def sparseml_integer(value: np.float32) -> int:  # as its exporter does, after moving int8 to uint8 (+128)
        shifted = np.array(zero_point + 128, np.uint8)
        return int(quantize_array(np.array([value], np.float32), np.array(scale, np.float32), shifted, np.uint8)[0]) - 128

    # a value just around a tie where the two roundings disagree
    tie = next(v for q in range(1, 60) for step in range(-8, 9)
               for v in [np.float32((q + 0.5) * scale) + np.float32(step) * np.spacing(np.float32((q + 0.5) * scale))]
               if torch_integer(v) != sparseml_integer(v))
    with torch.no_grad():
        embedding.weight[7, 3] = float(tie)
    feed = synthetic_qa_batch(2, 64, seed=3)
    with torch.no_grad():
        before = model(**feed).start_logits.clone()

    path = export_onnx(model, tmp_path / "model.onnx", sequence_length=64, quantized=True)

    with torch.no_grad():
        assert torch.equal(model(**feed).start_logits, before)  # PyTorch computes the same
    assert float(embedding.weight[7, 3]) == float(tie)  # and the model is left as it was
    graph = onnx.load(str(path)).graph
    initializers = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    gathers = [n for n in graph.node if n.op_type == "Gather" and n.input[0] in initializers
               and initializers[n.input[0]].shape == tuple(embedding.weight.shape)]
    gather = gathers[0]  # the word embeddings (several Gathers may share the one quantized table)
    # the table's DequantizeLinear: right after the Gather, or (MobileBERT) after the trigram Slice/Concat
    frontier, dequantize = [gather.output[0]], None
    while dequantize is None:
        consumers = [n for n in graph.node if set(frontier) & set(n.input)]
        dequantize = next((n for n in consumers if n.op_type == "DequantizeLinear"), None)
        frontier = [out for n in consumers for out in n.output]
    stored = int(initializers[gather.input[0]][7, 3]) - int(initializers[dequantize.input[2]])
    assert stored == torch_integer(tie) != sparseml_integer(tie)
