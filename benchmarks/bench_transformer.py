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
import platform

import torch

from book.hardware import default_device, dtype_label
from book.speed.timing import benchmark_module
from book.transformer.model import DTYPES, Transformer
from book.transformer.numerics import cpu_16bit_support, inference_times
from book.transformer.reversal import ReversalTask, training_run
from book.transformer.strict_fp16 import strict_fp16


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f
                     if line.startswith("model name")]
        return names[0]
    except (OSError, IndexError):
        return platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-run-time", type=float, default=1.0,
                        help="seconds of measurement per case (default 1)")
    args = parser.parse_args()
    device = default_device()
    print(f"torch {torch.__version__} on {device} "
          f"({torch.cuda.get_device_name() if device.type == 'cuda' else _cpu_name()}), "
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

    benchmark = benchmark_module()
    src, tgt = data["src_test"][:64].to(device), data["tgt_test"][:64, :-1].to(device)
    half = model.to(torch.float16).eval()
    print("\nforward pass in float16, batch 64: PyTorch's float32 running sums against the "
          "strict mode")
    base = None
    for block in (None, 64, 16, 1):
        timer = benchmark.Timer(stmt="with torch.no_grad(), mode(): m(src, tgt)",
                                globals={"m": half, "src": src, "tgt": tgt, "torch": torch,
                                         "mode": (lambda b=block: strict_fp16(b)) if block
                                         else contextlib.nullcontext})
        t = timer.blocked_autorange(min_run_time=args.min_run_time).median
        base = base or t
        label = "PyTorch" if block is None else f"strict, block {block}"
        print(f"{label:>17} {t * 1e3:9.1f} ms  {t / base:6.1f} x PyTorch's float16")

    rows, n = [], 64 * 11
    print(f"\nmatrix product [{n} x 256] @ [256 x 1024] (the first feed-forward layer)")
    for dtype in DTYPES:
        x = torch.randn(n, 256, device=device).to(dtype)
        w = torch.randn(1024, 256, device=device).to(dtype)
        timer = benchmark.Timer(stmt="torch.nn.functional.linear(x, w)",
                                globals={"x": x, "w": w, "torch": torch})
        rows.append((dtype, timer.blocked_autorange(min_run_time=args.min_run_time).median))
    base = dict(rows)[torch.float32]
    for dtype, t in rows:
        print(f"{dtype_label(dtype):>9} {t * 1e3:8.3f} ms  {t / base:6.2f} x fp32  "
              f"{2 * n * 256 * 1024 / t / 1e9:7.1f} GFLOP/s")


if __name__ == "__main__":
    main()
