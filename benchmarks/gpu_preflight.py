"""Preflight of the GPU check: versions, the device, and one compiled launch of each pass.

Exit status: 0 all good; 1 a pass differs from the PyTorch path (the later steps still
run: they say more); 2 no CUDA device (nothing later can run). ``--cpu`` runs the same
launches on CPU (the dry run: the kernels go through the interpreter when
``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu", action="store_true", help="dry run on CPU")
    args = p.parse_args(argv)
    import triton

    from mbkernels import ops
    from mbkernels.ops import triton_ops

    print(
        f"python {sys.version.split()[0]}, torch {torch.__version__}, triton {triton.__version__}"
    )
    if args.cpu:
        device, n = torch.device("cpu"), 4096 + 48
    else:
        if not torch.cuda.is_available():
            print("no CUDA device: the GPU steps cannot run", file=sys.stderr)
            return 2
        device, n = torch.device("cuda"), 2**20 + 48
        props = torch.cuda.get_device_properties(device)
        print(
            f"{props.name}, {props.multi_processor_count} SMs, {props.total_memory / 2**30:.0f} GiB"
        )
    ok = True
    for dtype in (torch.float32, torch.bfloat16):
        for t in (4, 12):  # the outer-product pass 1 and the tl.dot one
            gs = [torch.randn(n, device=device).to(dtype) * 10.0 ** (i % 3) for i in range(t)]
            w = torch.linspace(0.5, 2.0, t, device=device)
            start = time.perf_counter()
            gram = ops.gram(gs, "triton")
            out = ops.weighted_sum(gs, w, "triton")
            if device.type == "cuda":
                torch.cuda.synchronize()
            first = time.perf_counter() - start  # includes compilation
            ref_gram = ops.gram(gs, "torch").double()
            ref_out = ops.weighted_sum(gs, w, "torch").double()
            d_gram = float((gram.double() - ref_gram).abs().max() / ref_gram.abs().max())
            d_out = float((out.double() - ref_out).abs().max() / ref_out.abs().max())
            tol = 1e-5 if dtype == torch.float32 else 2e-2  # bfloat16: 2 ulps of the largest
            good = d_gram <= 1e-5 and d_out <= tol
            ok &= good
            print(
                f"{'ok  ' if good else 'FAIL'} {dtype!s:15} T={t:<3} N={n} gram {d_gram:.1e} "
                f"weighted_sum {d_out:.1e} (first call {first:.1f} s, launch "
                f"{triton_ops.gram_launch(t)})"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
