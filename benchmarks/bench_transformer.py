"""Inference time of the Transformer in float16, bfloat16 and float32, side by side.

    python benchmarks/bench_transformer.py [--min-run-time SECONDS]

Same weights (those of the finished run results/transformer.* when it matches the current
code, else the random initialisation), same inputs; median times from torch.utils.benchmark,
and the ratio to float32 measured in the same run. Also times one matrix product of the
feed-forward size in each dtype, which is where the differences come from, and the float16
forward pass in the strict 16-bit mode (book.transformer.strict_fp16) against PyTorch's float16; and
prints which 16-bit formats the CPU has instructions for, from its flags.
"""

from __future__ import annotations

import argparse
import contextlib
import functools

import torch

from book.hardware import cpu_model, default_device, dtype_label
from book.speed.timing import median_seconds
from book.transformer.model import DTYPES, Transformer
from book.transformer.numerics import cpu_16bit_support, inference_times
from book.transformer.reversal import ReversalTask, training_run
from book.transformer.strict_fp16 import strict_fp16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-run-time", type=float, default=1.0,
                        help="seconds of measurement per case (default 1)")
    args = parser.parse_args()
    device = default_device()
    print(f"torch {torch.__version__} on {device} "
          f"({torch.cuda.get_device_name() if device.type == 'cuda' else cpu_model()}), "
          f"{torch.get_num_threads()} threads")
    support = cpu_16bit_support()
    print("CPU instructions for " + ", ".join(
        f"{fmt}: {', '.join(flags) or 'none'}" for fmt, flags in support.items()))

    task = ReversalTask()
    model = Transformer(task.model_config(torch.float32))
    run = training_run(task)
    found = run.finished()
    if found is not None:
        model.load_state_dict(found[1])
        print(f"weights: {run.weights_path.name}")
    else:
        print("weights: random initialisation (no finished run of the current code found)")
    model.to(device)
    data = task.data()

    for batch in (1, 64):
        src = data["src_test"][:batch].to(device)
        tgt = data["tgt_test"][:batch, :-1].to(device)
        table = inference_times(model, src, tgt, min_run_time=args.min_run_time)
        print(f"\none forward pass, batch {batch}, S={src.shape[1]}, T={tgt.shape[1]}")
        print(table.to_string(float_format=lambda v: f"{v:8.3f}"))

    src, tgt = data["src_test"][:64].to(device), data["tgt_test"][:64, :-1].to(device)
    half = model.to(torch.float16).eval()
    print("\nforward pass in float16, batch 64: PyTorch's float32 running sums against the "
          "strict mode")
    base = None
    for block in (None, 64, 16, 1):
        mode = functools.partial(strict_fp16, block) if block else contextlib.nullcontext
        t = median_seconds("with torch.no_grad(), mode(): m(src, tgt)",
                           min_run_time=args.min_run_time, m=half, src=src, tgt=tgt, mode=mode)
        base = base or t
        label = "PyTorch" if block is None else f"strict, block {block}"
        print(f"{label:>17} {t * 1e3:9.1f} ms  {t / base:6.1f} x PyTorch's float16")

    rows, n = [], 64 * 11
    print(f"\nmatrix product [{n} x 256] @ [256 x 1024] (the first feed-forward layer)")
    for dtype in DTYPES:
        x = torch.randn(n, 256, device=device).to(dtype)
        w = torch.randn(1024, 256, device=device).to(dtype)
        rows.append((dtype, median_seconds("torch.nn.functional.linear(x, w)",
                                           min_run_time=args.min_run_time, x=x, w=w)))
    base = dict(rows)[torch.float32]
    for dtype, t in rows:
        print(f"{dtype_label(dtype):>9} {t * 1e3:8.3f} ms  {t / base:6.2f} x fp32  "
              f"{2 * n * 256 * 1024 / t / 1e9:7.1f} GFLOP/s")


if __name__ == "__main__":
    main()
