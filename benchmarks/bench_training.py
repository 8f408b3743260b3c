"""Training speed against the machine's arithmetic limit, and time to a converged net.

1. The machine's peak: a 4096x4096 matrix product in float32 and in bfloat16 (GFLOP/s, best
   of 3), and whether the CPU has native bf16 dot products (``avx512_bf16``/``amx_bf16``).
2. The shift augmentation alone: the book's ``shifted`` (each batch padded, then gathered from)
   against one gather from the training set padded once per epoch, interleaved; the script
   checks that the two give identical batches.
3. One training epoch of each net (55,000 images, ``book.mnist.training.train_epoch``) for the
   book's loop, ``fused`` Adam and each other lever alone and combined (``--compile`` adds
   ``torch.compile``, alone and with bf16 autocast), in interleaved rounds (best and spread).
   Each epoch is also a fraction of the peak: its arithmetic is 3 forward passes' worth of
   multiply-accumulates per image (forward, input gradient, weight gradient) less the first
   layer's input gradient, which nobody needs, counted by ``book.counting.counter``.
4. Where the book's epoch goes, from ``torch.profiler`` (self time of each operator, one epoch
   on 12,800 images after a warm-up one): the share of the products (convolutions and matrix
   products, forward and backward) and of the rest. The rest is a bound no faster product can
   remove: even at the peak, an epoch takes its products at the peak plus the rest as measured.
5. The Transformer of Problem 2 (``book.transformer.reversal.train_reversal``): seconds per
   training step with bf16 autocast (the book's) and without, in interleaved rounds of short
   runs, as a fraction of the peak (its multiply-accumulates from ``closed_form_counts``).
6. The book's own finished runs (``results/`` after ``make book``, each record checked by
   ``book.runs.read_record``): the least time their epochs could take here with these kernels,
   beside the seconds they took, summed against the 3-minute build target (``--build-bound``
   prints only the peaks and this).
7. Each net trained to convergence with the book's rule (in a temporary folder), with the
   book's configuration and each lever of 3. Targets: LeNet-5 at least 99.3% test accuracy in
   at most 12 s of training, the separable net at least 98.6% in at most 15 s; a LeNet-5 epoch
   in at most 1.5 s.

Run with ``make bench`` or ``python benchmarks/bench_training.py [--rounds N] [--compile]
[--skip-convergence] [--build-bound]`` on an otherwise idle machine: two processes sharing two
cores distort every timing.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from book.counting.counter import count_ops
from book.hardware import cpu_flags, default_device
from book.mnist.data import load_mnist
from book.mnist.models import LeNet5, LeNet5DSC, LeNet5DSCFullFirst
from book.mnist.training import TrainConfig, shifted, split, train, train_epoch
from book.paths import RESULTS_DIR
from book.runs import read_record
from book.transformer.costs import closed_form_counts
from book.transformer.reversal import ReversalConfig, ReversalTask, train_reversal

BOOK = {"LeNet5": TrainConfig(), "LeNet5DSC": TrainConfig(lr=2e-2)}
TARGETS = {"LeNet5": (0.993, 12.0), "LeNet5DSC": (0.986, 15.0)}  # accuracy, training seconds
EPOCH_TARGET = {"LeNet5": 1.5}
LEVERS = {  # name -> changes to the book's configuration
    "book's loop (float32, batch 256)": {},
    "fused Adam": {},
    "bf16 autocast": {"autocast_bf16": True},
    "batch 512": {"batch_size": 512},
    "bf16 autocast + batch 512": {"autocast_bf16": True, "batch_size": 512},
}
FUSED = {"fused Adam"}  # torch.optim.Adam(fused=True): one kernel per step for all tensors
COMPILED = {  # with --compile: the model wrapped in torch.compile (inductor, the C compiler)
    "torch.compile": {},
    "torch.compile + bf16 autocast": {"autocast_bf16": True},
}


def peak_gflops(dtype: torch.dtype, n: int = 4096, repeats: int = 3) -> float:
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    a @ b  # warm-up
    best = min(_seconds(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def product_macs(make) -> list[int]:
    """The multiply-accumulates of each convolution and linear layer of ``make()`` for one
    digit's forward pass, in order, from the op counter."""
    table = count_ops(make(), (1, 1, 28, 28))
    return [int(m) for m in table.loc[table["kind"].isin(["Conv2d", "Linear"]), "mults"]]


def training_flops_per_image(make) -> int:
    """2 x (3 forward MACs - the first layer's input gradient), from the op counter."""
    macs = product_macs(make)
    return 2 * (3 * sum(macs) - macs[0])


def rate(flops: float, seconds: float, peaks: dict[str, float], label: str) -> str:
    """``flops`` done in ``seconds`` as GFLOP/s and as a share of the peak of ``label``'s
    dtype (bf16 when ``label`` names it, else fp32)."""
    bf16 = "bf16" in label
    gflops = flops / seconds / 1e9
    return (f"{gflops:6.1f} GFLOP/s = {gflops / peaks['bfloat16' if bf16 else 'float32']:5.1%} "
            f"of the {'bf16' if bf16 else 'fp32'} peak")


def book_loop(make, config: TrainConfig, fused: bool = False):
    """``(model, averaged, optimizer)`` as the book's loop starts them: seed 0, channels-last,
    a copy for the weight average, Adam at ``config.lr``."""
    torch.manual_seed(0)
    model = make().to(memory_format=torch.channels_last)
    return model, copy.deepcopy(model), torch.optim.Adam(model.parameters(), lr=config.lr,
                                                         fused=fused)


def transformer_step_flops(task: ReversalTask, config: ReversalConfig) -> int:
    """FLOP of one training step of the Problem 2 Transformer: forward and the two gradients,
    2 x 3 x its multiply-accumulates per sequence (``closed_form_counts``) x the batch."""
    counts = closed_form_counts(task.max_len, task.max_len + 1, task.model_config(torch.float32))
    macs = sum(int(block.get("mults", 0)) for block in counts.values())  # per sequence
    return 2 * 3 * macs * config.batch_size


def epoch_speed(rounds: int, peaks: dict[str, float], compiled: bool = False
                ) -> dict[str, float]:
    """Print each lever's epoch time per net; return the book's loop's best epoch, per net.

    With ``compiled``, the :data:`COMPILED` levers run too; their first round includes the
    compilation, which the best of the rounds leaves out and which is printed separately."""
    levers = {**LEVERS, **(COMPILED if compiled else {})}
    data = load_mnist()
    splits = split(data, TrainConfig(), default_device())
    n = len(splits.train_y)
    best_epochs, book_epochs = {}, {}
    print(f"\none training epoch of {n:,} images, {torch.get_num_threads()} threads, "
          f"{rounds} interleaved rounds (best, and the range over the rounds):")
    for make in (LeNet5, LeNet5DSC):
        flops = training_flops_per_image(make) * n
        contenders = {}
        for lever, changes in levers.items():
            config = dataclasses.replace(BOOK[make.__name__], **changes)
            model, averaged, optimizer = book_loop(make, config, fused=lever in FUSED)
            if lever in COMPILED:
                model = torch.compile(model)  # shares the parameters the optimizer updates
            contenders[lever] = (model, averaged, optimizer, config)
        times: dict[str, list[float]] = {lever: [] for lever in levers}
        for r in range(rounds):
            for lever, (model, averaged, optimizer, config) in contenders.items():
                g = torch.Generator().manual_seed(r)
                start = time.perf_counter()
                train_epoch(model, optimizer, splits.train_x, splits.train_y, config, g,
                            averaged, fill=splits.background)
                times[lever].append(time.perf_counter() - start)
        print(f"  {make.__name__} ({flops / 1e9:.0f} GFLOP per epoch)")
        for lever, ts in times.items():
            print(f"    {lever:32s} {min(ts):5.2f} s  ({min(ts):.2f}-{max(ts):.2f})  "
                  + rate(flops, min(ts), peaks, lever)
                  + (f"; compiling took about {ts[0] - min(ts[1:]):.0f} s"
                     if lever in COMPILED and len(ts) > 1 else ""))
        best_epochs[make.__name__] = min(min(ts) for ts in times.values())
        book_epochs[make.__name__] = min(times[next(iter(LEVERS))])
        target = EPOCH_TARGET.get(make.__name__)
        if target:
            verdict = "meets" if best_epochs[make.__name__] <= target else "MISSES"
            print(f"    best epoch {best_epochs[make.__name__]:.2f} s: {verdict} the "
                  f"{target} s target")
    return book_epochs


def gather_from_padded(source: torch.Tensor, index: torch.Tensor, shift: int,
                       generator: torch.Generator) -> torch.Tensor:
    """The alternative to ``book.mnist.training.shifted``: images ``index`` of ``source`` (the whole
    set, padded once by ``shift`` pixels) moved by random offsets drawn exactly as ``shifted``
    draws them, in one gather with no copy of the batch first."""
    n, h, w = len(index), source.shape[2] - 2 * shift, source.shape[3] - 2 * shift
    dy, dx = torch.randint(0, 2 * shift + 1, (2, n, 1), generator=generator)
    rows = (dy + torch.arange(h))[:, :, None]
    cols = (dx + torch.arange(w))[:, None, :]
    return source[index[:, None, None], 0, rows, cols].unsqueeze(1)


def shift_speed(rounds: int, batches: int = 200) -> None:
    """The shift augmentation per batch of 256: the book's ``shifted`` (pad the batch, then
    gather) against :func:`gather_from_padded` on the set padded once (its padding counted
    once per ``batches`` batches), interleaved; the batches are checked to be identical."""
    data = load_mnist()
    config = TrainConfig()
    splits = split(data, config)
    x, s, fill = splits.train_x, config.shift, splits.background
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    batches_idx = [order[i * 256:(i + 1) * 256] for i in range(batches)]

    def book() -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(1)
        return [shifted(x[idx], s, g, fill=fill) for idx in batches_idx]

    def prepadded() -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(1)
        source = F.pad(x, (s, s, s, s), value=fill)
        return [gather_from_padded(source, idx, s, g) for idx in batches_idx]

    same = all(torch.equal(a, b) for a, b in zip(book(), prepadded(), strict=True))
    times = {"book's shifted (pad each batch)": [], "gather from the set padded once": []}
    for _ in range(rounds):
        for label, fn in zip(times, (book, prepadded), strict=True):
            times[label].append(_seconds(fn) / batches)
    steps = -(-len(x) // config.batch_size)
    print(f"\nthe shift augmentation, {batches} batches of 256, {rounds} interleaved rounds "
          f"(identical batches: {same}):")
    for label, ts in times.items():
        print(f"    {label:34s} {1e3 * min(ts):.2f} ms per batch ({1e3 * min(ts):.2f}-"
              f"{1e3 * max(ts):.2f}), {steps * min(ts):.2f} s per epoch of {steps} batches")


PRODUCTS = {"aten::mkldnn_convolution", "aten::convolution_backward", "aten::_slow_conv2d_forward",
            "aten::_slow_conv2d_backward", "aten::thnn_conv2d", "aten::mm", "aten::addmm",
            "aten::bmm"}


def profiled_epoch(make, config: TrainConfig, data) -> tuple[dict[str, float], float]:
    """Self CPU microseconds per operator of one epoch of the book's loop on
    ``config.train_limit`` images, and the seconds of the same epoch unprofiled (both after a
    warm-up epoch)."""
    splits = split(data, config, default_device())
    model, averaged, optimizer = book_loop(make, config)
    g = torch.Generator().manual_seed(0)
    seconds = []
    for profiled in (False, False, True):
        with profile(activities=[ProfilerActivity.CPU]) if profiled else nullcontext() as prof:
            seconds.append(_seconds(lambda: train_epoch(
                model, optimizer, splits.train_x, splits.train_y, config, g, averaged,
                fill=splits.background)))
    return {e.key: e.self_cpu_time_total for e in prof.key_averages()}, seconds[1]


def products_share(self_us: dict[str, float]) -> float:
    """The share of the profiled self time spent in :data:`PRODUCTS`."""
    return sum(t for k, t in self_us.items() if k in PRODUCTS) / sum(self_us.values())


def where_time_goes(peaks: dict[str, float], epoch_seconds: dict[str, float],
                    images: int = 12_800) -> None:
    """Print, per net, the products' and the rest's share of a profiled epoch of the book's
    loop, and the bound on a full epoch that the rest sets."""
    data = load_mnist()
    print(f"\nwhere an epoch of the book's loop goes (torch.profiler, self time of each "
          f"operator, {images:,} images):")
    for make in (LeNet5, LeNet5DSC):
        config = dataclasses.replace(BOOK[make.__name__], train_limit=images)
        self_us, _ = profiled_epoch(make, config, data)
        total = sum(self_us.values())
        products = products_share(self_us)
        top = sorted(((t, k) for k, t in self_us.items() if k not in PRODUCTS), reverse=True)
        largest = ", ".join(f"{k.removeprefix('aten::')} {t / total:.0%}" for t, k in top[:4])
        n = len(data.train_labels) - config.val_size
        floor = training_flops_per_image(make) * n / (peaks["float32"] * 1e9)
        rest = (1 - products) * epoch_seconds[make.__name__]
        print(f"  {make.__name__}: products {products:.0%} of the time, the rest "
              f"{1 - products:.0%} (largest: {largest})")
        print(f"    a full epoch: products at the float32 peak {floor:.2f} s + the rest as "
              f"measured {rest:.2f} s = {floor + rest:.2f} s at best with these kernels")


def transformer_speed(peaks: dict[str, float], rounds: int, steps: int = 100) -> None:
    """Seconds per training step of the Problem 2 Transformer, bf16 autocast (the book's
    choice) against float32, each a fresh run of ``steps`` steps in a temporary folder."""
    task, book = ReversalTask(), ReversalConfig()
    flops = transformer_step_flops(task, book)
    configs = {"bf16 autocast (the book's)": dataclasses.replace(
                   book, steps=steps, eval_every=steps, checkpoint_every=steps),
               "float32": dataclasses.replace(book, steps=steps, eval_every=steps,
                                              checkpoint_every=steps, autocast=False)}
    times: dict[str, list[float]] = {label: [] for label in configs}
    for _ in range(rounds):
        for label, config in configs.items():
            with tempfile.TemporaryDirectory() as folder:
                _, record = train_reversal(task, config, results_dir=folder)
            times[label].append(record["seconds"] / steps)
    print(f"\nthe Problem 2 Transformer, one training step of {book.batch_size} sequences "
          f"({flops / 1e9:.1f} GFLOP), {rounds} interleaved rounds of {steps}-step runs:")
    for label, ts in times.items():
        print(f"    {label:28s} {1e3 * min(ts):6.1f} ms ({1e3 * min(ts):.1f}-{1e3 * max(ts):.1f})"
              f"  {rate(flops, min(ts), peaks, label)}; {book.steps} steps "
              f"{book.steps * min(ts):.0f} s")


# The models that the book's finished runs can hold (a run is matched by its structure).
BOOK_MODELS = {"LeNet5": LeNet5, "LeNet5DSC": LeNet5DSC,
               "LeNet5DSCFullFirst": LeNet5DSCFullFirst,
               "LeNet5DSC, width 2": functools.partial(LeNet5DSC, width=2),
               "LeNet5DSC, width 3": functools.partial(LeNet5DSC, width=3)}
BUILD_TARGET = 180.0  # seconds for `make book` after installation (issue: training speed)


def _book_model(name: str, record: dict) -> str:
    structure = record["identity"]["structure"]
    for label, make in BOOK_MODELS.items():
        if repr(make()) == structure:
            return label
    raise SystemExit(f"results/{name}.json: its model is none of {list(BOOK_MODELS)}; "
                     "add its constructor to BOOK_MODELS in benchmarks/bench_training.py")


def build_bound(peaks: dict[str, float], results_dir: Path = RESULTS_DIR,
                images: int = 12_800) -> None:
    """The least time the book's own training runs (the finished ones in ``results_dir``,
    from a ``make book``) could take on this machine with these kernels: per run, its epochs
    times, per image, the products at the float32 peak plus the rest as profiled (see
    :func:`where_time_goes`), and the scoring passes (forward products only, at the peak);
    the Transformer's steps at the bfloat16 peak (its rest not counted). Printed beside each
    run's own measured seconds and against the build target. A record that fails its checks
    (:func:`book.runs.read_record`) stops the script with its name."""
    records = {path.stem: read_record(path) for path in sorted(Path(results_dir).glob("*.json"))}
    if not records:
        raise SystemExit(f"no finished runs in {results_dir}: run `make book` first")
    data = load_mnist()
    labels = {name: _book_model(name, record) for name, record in records.items()
              if "task" not in record["identity"]}  # the MNIST runs
    per_image = {}  # model -> (training seconds per image at the bound, scoring seconds)
    for label in sorted(set(labels.values())):
        make = BOOK_MODELS[label]
        config = dataclasses.replace(TrainConfig(), train_limit=images)
        self_us, seconds = profiled_epoch(make, config, data)
        rest = (1 - products_share(self_us)) * seconds / images
        peak = peaks["float32"] * 1e9
        per_image[label] = (training_flops_per_image(make) / peak + rest,
                            2 * sum(product_macs(make)) / peak)
    print(f"\nthe book's finished runs ({results_dir.name}/), the least training time at "
          f"the bound (products at the peak, the rest as profiled on {images:,} images):")
    total_bound = total_measured = 0.0
    for name, record in records.items():
        identity = record["identity"]
        if "task" in identity:  # the Problem 2 Transformer
            config = ReversalConfig(**identity["config"])
            bound = (config.steps * transformer_step_flops(ReversalTask(), config)
                     / (peaks["bfloat16"] * 1e9))
            what = f"{config.steps} steps, products only, at the bf16 peak"
        else:
            label, cfg = labels[name], identity["config"]
            train_images = cfg["train_limit"] or len(data.train_labels) - cfg["val_size"]
            scored = cfg["val_size"] + len(data.test_labels)
            train_s, score_s = per_image[label]
            bound = record["epochs"] * (train_images * train_s + scored * score_s)
            what = f"{record['epochs']:2d} epochs of {train_images:,} images, {label}"
        total_bound += bound
        total_measured += record["seconds"]
        print(f"  {name:24s} {what:52s} bound {bound:6.1f} s, measured {record['seconds']:7.1f} s")
    print(f"  all runs: bound {total_bound:.0f} s (measured when trained {total_measured:.0f} s)")
    if total_bound < BUILD_TARGET:
        print(f"  that leaves {BUILD_TARGET - total_bound:.0f} s of the {BUILD_TARGET:.0f} s build "
              "target for executing the rest of the notebooks and building the HTML")
    else:
        print(f"  {total_bound - BUILD_TARGET:.0f} s over the {BUILD_TARGET:.0f} s build target "
              "before the rest of the notebooks run and the HTML is built: the target MISSES "
              "with these kernels")


def convergence() -> None:
    data = load_mnist()
    print("\ntraining to convergence (fresh, in a temporary folder):")
    for make in (LeNet5, LeNet5DSC):
        accuracy, seconds = TARGETS[make.__name__]
        for label in [k for k in LEVERS if k not in FUSED]:  # train() has no fused Adam
            changes = LEVERS[label]
            config = dataclasses.replace(BOOK[make.__name__], **changes)
            with tempfile.TemporaryDirectory() as folder:
                result = train("run", make, data, config, results_dir=folder, progress=False)
            ok = result.test_acc >= accuracy and result.seconds <= seconds
            print(f"  {make.__name__:9s} {label:32s} {result.epochs:2d} epochs (best "
                  f"{result.best_epoch:2d})  test accuracy {result.test_acc:.2%} (target "
                  f"{accuracy:.1%})  training {result.seconds:5.1f} s (target {seconds:.0f} s): "
                  f"{'meets' if ok else 'MISSES'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-convergence", action="store_true")
    parser.add_argument("--compile", action="store_true",
                        help="also time torch.compile, alone and with bf16 autocast")
    parser.add_argument("--build-bound", action="store_true",
                        help="only the peaks and the bound on the book's own training runs "
                             "(needs the finished runs of a `make book` in results/)")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR,
                        help="the folder of finished runs for the bound (default: results/)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    flags = sorted(cpu_flags() & {"avx512_bf16", "amx_bf16", "amx_tile", "avx512f"})
    print(f"torch {torch.__version__}, device {default_device()}, CPU flags: "
          f"{', '.join(flags) or 'none of avx512f/avx512_bf16/amx'}")
    peaks = {"float32": peak_gflops(torch.float32), "bfloat16": peak_gflops(torch.bfloat16)}
    print("peak of a 4096x4096 matrix product: "
          + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peaks.items()))
    if args.build_bound:
        build_bound(peaks, args.results)
        return
    shift_speed(max(args.rounds, 5))
    best = epoch_speed(args.rounds, peaks, args.compile)
    where_time_goes(peaks, best)
    transformer_speed(peaks, args.rounds)
    if any(args.results.glob("*.json")):
        build_bound(peaks, args.results)
    if not args.skip_convergence:
        convergence()


if __name__ == "__main__":
    main()
