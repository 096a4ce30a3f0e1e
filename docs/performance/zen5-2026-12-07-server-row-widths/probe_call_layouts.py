"""Server-sized OpenVINO calls of packed rows, two workers at once, in four layouts: windows/s of each.

The question (issue 35): would Server's token-budget calls, which hold a few windows, run more windows per second if
each call were packed at the narrowest of several row widths (128, 192, 256, 384) instead of always in 384-token rows?
Calls are k windows drawn from the SQuAD v1.1 dev windows' lengths; each layout runs the same calls for 10 s on two
threads (one per OpenVINO stream, as the Server SUT's two workers). Run from the repository root on an idle machine:

    .venv/bin/python docs/performance/zen5-2026-12-07-server-row-widths/probe_call_layouts.py \\
        --model models/obert-mobilebert-14l-50pct-block4-int8-untrained --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import numpy as np
import openvino as ov

from harness.packing import pack_windows, packed_inputs
from squad.features import FeatureParams, load_or_build_features

WIDTHS = (128, 192, 256, 384)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="model directory with model-packed-qdq.onnx")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    features = load_or_build_features(args.data_dir / "dev-v1.1.json", args.data_dir / "bert-uncased-vocab.txt",
                                      FeatureParams(), Path("cache/features"), progress=False)
    lengths, ids, types = np.asarray(features.seq_lengths), features.input_ids, features.segment_ids
    core = ov.Core()

    def compiled(sequence, pinned: bool):
        model = core.read_model(str(args.model / "model-packed-qdq.onnx"))
        model.reshape({port.get_any_name(): [ov.Dimension(1, 8), sequence] for port in model.inputs})
        return core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": "2",
                                                 "ENABLE_CPU_PINNING": pinned})

    rng = np.random.default_rng(1)

    def calls(k: int, widths: tuple[int, ...], count: int = 400) -> list:
        """``count`` calls of k windows, each packed at the width of ``widths`` that computes the fewest tokens."""
        out = []
        for _ in range(count):
            chosen = rng.choice(len(lengths), k, replace=False)
            window_lengths = lengths[chosen]
            best = None
            for width in widths:
                if width >= window_lengths.max():
                    rows = pack_windows(np.arange(k), window_lengths, width)
                    if best is None or len(rows) * width < best[0]:
                        best = (len(rows) * width, width, rows)
            _, width, rows = best
            out.append((width, packed_inputs(rows, ids[chosen], types[chosen], window_lengths, width), k))
        return out

    def windows_per_s(models: dict, work: list) -> float:
        done = [0, 0]

        def worker(j: int) -> None:
            requests = {width: model.create_infer_request() for width, model in models.items()}
            started, i = time.perf_counter(), j
            while time.perf_counter() - started < args.seconds:
                width, feeds, k = work[i % len(work)]
                requests[width].infer(feeds)
                done[j] += k
                i += 2

        threads = [threading.Thread(target=worker, args=(j,)) for j in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return sum(done) / args.seconds

    print("| windows per call | layout | windows/s |\n|---:|---|---:|")
    for k in (2, 4):
        full, mixed = calls(k, (384,)), calls(k, WIDTHS)
        layouts = {
            "A: one static 384 model, pinned, 384-token rows (today)": lambda: ({384: compiled(384, True)}, full),
            "B: four static models (one per width), unpinned": lambda: (
                {w: compiled(w, False) for w in WIDTHS}, mixed),
            "B2: four static models, pinned": lambda: ({w: compiled(w, True) for w in WIDTHS}, mixed),
            "C: one model with a dynamic row axis, pinned, widths": lambda: (
                dict.fromkeys(WIDTHS, compiled(ov.Dimension(1, 384), True)), mixed),
            "D: one model with a dynamic row axis, pinned, 384-token rows": lambda: (
                {384: compiled(ov.Dimension(1, 384), True)}, full),
        }
        for name, build in layouts.items():
            models, work = build()
            print(f"| {k} | {name} | {windows_per_s(models, work):.1f} |", flush=True)
            del models


if __name__ == "__main__":
    main()
