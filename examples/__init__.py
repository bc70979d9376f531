"""Examples that run MultiBalance inside other training engines (repository only).

Like :mod:`benchmarks`, this package is not in the wheel: it imports optional engines
(TorchRec) that ``mbkernels`` itself never imports, and uses only mbkernels' public API.

``python -m examples.torchrec_dlrm --nproc 2``: a multi-task DLRM in TorchRec, sharded by
``DistributedModelParallel``. Modules: ``torchrec_model`` (the model, MultiBalance on Z),
``torchrec_data`` (synthetic Criteo-like and MovieLens batches), ``torchrec_sharding``
(the DMP plan and wrap), ``torchrec_checkpoint`` (save and restore), ``torchrec_dlrm``
(the job: ranks, the single-process reference, metrics, command line).
"""
