"""Examples that run MultiBalance inside other training engines (repository only).

Like :mod:`benchmarks`, this package is not in the wheel: it imports optional engines
(TorchRec) that ``mbkernels`` itself never imports, and uses only mbkernels' public API.

``python -m examples.torchrec_dlrm --nproc 2``: a multi-task DLRM in TorchRec, sharded by
``DistributedModelParallel`` (:mod:`examples.torchrec_dlrm`).
"""
