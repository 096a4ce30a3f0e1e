"""oBERT-MobileBERT for MLPerf Inference: LoadGen harness and compression pipeline."""
from setuptools import find_packages, setup

# The verified dependency set (Python 3.11; README, Requirements). torch is pinned exactly: any looser pin pulls
# the CUDA build. constraints.txt locks every transitive package of the tested environment.
INSTALL_REQUIRES = [
    "numpy>=1.26,<1.27",
    "torch==2.13.0",
    "transformers==4.40.2",
    "tokenizers==0.19.1",
    "datasets==2.18.0",
    "pyarrow<20",
    "accelerate==0.30.1",
    "compressed-tensors==0.4.0",
    "sparseml==1.8.0",
    "sparsezoo==1.8.1",
    "setuptools>=77,<81",
    "deepsparse==1.8.0",
    "onnx==1.14.1",
    "onnxruntime==1.26.0",
    "ml_dtypes==0.5.1",  # onnxruntime.quantization (the benchmark's ORT INT8 peer)
    "mlcommons-loadgen==6.0.17",
    "tqdm==4.70.1",
    "matplotlib==3.11.2",
    "psutil==7.2.2",
    "PyYAML==6.0.4",
    "requests==2.34.2",
    "ray==2.60.0",  # --cluster ray: engines on the nodes of a Ray cluster (harness/backends/ray_pool.py)
    "openvino==2026.4.1",  # --backend openvino (harness/backends/openvino_backend.py), maintained, AMX-aware
]

setup(
    name="obert-mobilebert-mlperf",
    version="0.1.0",
    description="MLPerf Inference harness (LoadGen + DeepSparse/OpenVINO/ONNX Runtime) and oBERT compression "
    "pipeline for MobileBERT on SQuAD v1.1",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["cmdline", "cmdline.*", "squad", "squad.*", "engine_introspection", "engine_introspection.*", "harness",
                                    "harness.*", "compression", "compression.*", "experiments", "experiments.*",
                                    "benchmarks", "benchmarks.*", "submission", "submission.*"]),
    package_data={"compression": ["recipes/*.yaml"], "harness": ["conf/*.conf"],
                  "submission": ["system_template.json"]},
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": ["pytest==9.2.0"]},
    entry_points={
        "console_scripts": [
            "obert-harness=harness.cli:main",
            "obert-compress=compression.cli:main",
            "obert-experiment=experiments.cli:main",
            "obert-bench=benchmarks.cli:main",
            "obert-submission=submission.cli:main",
        ]
    },
)
