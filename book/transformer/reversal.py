"""The demonstration of chapter 5: the Transformer learns to reverse digit sequences.

The task and its tokens, its training (:func:`train_reversal`, stored as the run
``results/transformer.*``), and what the trained model does: :func:`exact_match` of greedy
decoding, :func:`accuracy_by_length` (also beyond the trained lengths) and its attention.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from book.checks import positive_float, positive_int
from book.hardware import default_device, dtype_label
from book.inspection import eval_mode, forward_hooks
from book.paths import RESULTS_DIR
from book.runs import Run, Stages, code_digest, run_in_stages
from book.transformer import layers, strict_fp16
from book.transformer import model as transformer_model
from book.transformer.model import BOS, EOS, PAD, Softmax, Transformer, TransformerConfig

__all__ = ["DIGIT_OFFSET", "VOCAB", "ReversalConfig", "ReversalTask", "ReversalTraining",
           "accuracy_by_length", "anti_diagonal_attention", "attention_maps", "decode", "encode",
           "exact_match", "held_out_loss", "token_name", "train_reversal", "training_run",
           "with_max_len"]

DIGIT_OFFSET = EOS + 1  # digit d is token d + DIGIT_OFFSET: after PAD, BOS and EOS
VOCAB = DIGIT_OFFSET + 10


def encode(digits: Iterable[int]) -> list[int]:
    """Digits 0-9 -> their token ids."""
    return [d + DIGIT_OFFSET for d in digits]


def token_name(token: int) -> str:
    """``"pad"``, ``"bos"``, ``"eos"`` or the digit a token id stands for."""
    return {PAD: "pad", BOS: "bos", EOS: "eos"}.get(token, str(token - DIGIT_OFFSET))


def decode(tokens: torch.Tensor | Iterable[int]) -> str:
    """Token ids -> the digits among them as text, ``"3 1 4"`` (special tokens left out)."""
    ids = tokens.tolist() if isinstance(tokens, torch.Tensor) else tokens
    return " ".join(token_name(t) for t in ids if t >= DIGIT_OFFSET)


@dataclass(frozen=True)
class ReversalTask:
    """Reverse a sequence of ``min_len``..``max_len`` digits: ``3 1 4 -> 4 1 3``.

    Sources are the digits' tokens right-padded to ``max_len``; targets are ``BOS``, the
    reversed digits and ``EOS``, right-padded to ``max_len + 2``. The ``n_test`` held-out
    sequences are distinct and none is in the training set: no held-out sequence was ever
    trained on.
    """

    min_len: int = 1
    max_len: int = 10
    n_train: int = 20_000
    n_test: int = 1_000
    seed: int = 0

    def model_config(self, dtype: torch.dtype = torch.float16) -> TransformerConfig:
        """The Transformer for this task: its vocabulary, room for ``BOS ... EOS``."""
        return TransformerConfig(VOCAB, VOCAB, max_len=self.max_len + 2, dtype=dtype)

    def sample(self, n: int, g: torch.Generator) -> list[tuple[int, ...]]:
        """``n`` random digit sequences of random lengths."""
        lengths = torch.randint(self.min_len, self.max_len + 1, (n,), generator=g)
        digits = torch.randint(0, 10, (n, self.max_len), generator=g)
        return [tuple(row[:k].tolist()) for row, k in zip(digits, lengths.tolist(), strict=True)]

    def tensors(self, seqs: list[tuple[int, ...]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Digit tuples -> (``src [N, max_len]``, ``tgt [N, max_len + 2]``) token ids."""
        src = torch.full((len(seqs), self.max_len), PAD, dtype=torch.long)
        tgt = torch.full((len(seqs), self.max_len + 2), PAD, dtype=torch.long)
        for i, s in enumerate(seqs):
            src[i, : len(s)] = torch.tensor(encode(s))
            tgt[i, : len(s) + 2] = torch.tensor([BOS, *encode(reversed(s)), EOS])
        return src, tgt

    def data(self) -> dict[str, torch.Tensor]:
        """``src_train, tgt_train, src_test, tgt_test``, always the same for the same task."""
        if not 1 <= self.min_len <= self.max_len:
            raise ValueError(f"need 1 <= min_len <= max_len, got {self.min_len}, {self.max_len}")
        g = torch.Generator().manual_seed(self.seed)
        train = self.sample(self.n_train, g)
        seen, test = set(train), []
        for _ in range(100):
            for s in self.sample(self.n_test, g):
                if s not in seen and len(test) < self.n_test:
                    seen.add(s)  # held-out sequences are distinct, too
                    test.append(s)
        if len(test) < self.n_test:
            raise ValueError(f"found only {len(test)} sequences outside the training set; "
                             "lower n_test or n_train, or allow longer sequences")
        src_train, tgt_train = self.tensors(train)
        src_test, tgt_test = self.tensors(test)
        return dict(src_train=src_train, tgt_train=tgt_train, src_test=src_test,
                    tgt_test=tgt_test)


@dataclass(frozen=True)
class ReversalConfig:
    """Adam with linear warm-up and cosine decay; float32 weights, bf16 autocast on the CPU;
    the loss on the held-out sequences every ``eval_every`` steps."""

    steps: int = 600
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 50
    seed: int = 0
    checkpoint_every: int = 100
    eval_every: int = 50
    autocast: bool = True

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "warmup", "checkpoint_every", "eval_every"):
            positive_int(name, getattr(self, name))
        positive_float("lr", self.lr)

    def lr_at(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        progress = (step - self.warmup) / max(1, self.steps - self.warmup)
        return self.lr * 0.5 * (1 + math.cos(math.pi * progress))


def _initial_model(task: ReversalTask, config: ReversalConfig) -> Transformer:
    """The float32 model before training, the same for the same seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return Transformer(task.model_config(torch.float32))


def training_run(task: ReversalTask = ReversalTask(), config: ReversalConfig = ReversalConfig(),
                 *, name: str = "transformer", results_dir: str | Path = RESULTS_DIR,
                 retrain: bool = False) -> Run:
    """The stored run of :func:`train_reversal`, keyed by everything that decides its result:
    the task, the configuration, the model's configuration and the source of the model and of
    the training code (renamed weights are a new identity, so they are retrained)."""
    model = task.model_config(torch.float32)
    identity = {"task": asdict(task), "config": asdict(config),
                "model": asdict(model) | {"dtype": dtype_label(model.dtype)},
                "model_code": code_digest(transformer_model, layers, strict_fp16),
                "training_code": code_digest(ReversalTask, ReversalConfig, _initial_model,
                                             train_reversal, ReversalTraining, held_out_loss)}
    return Run(name, identity, results_dir, retrain=retrain)


def train_reversal(task: ReversalTask = ReversalTask(), config: ReversalConfig = ReversalConfig(),
                   *, name: str = "transformer", results_dir: str | Path = RESULTS_DIR,
                   device: torch.device | str | None = None, dtype: torch.dtype = torch.float16,
                   retrain: bool = False, log: Callable[[str], None] | None = None,
                   ) -> tuple[Transformer, dict]:
    """Train on ``task`` (or reuse a finished run); return the model in ``dtype`` and the
    run's record (``history``: the loss per step; ``held_out``: the loss on the task's
    held-out sequences every ``config.eval_every`` steps; ``seconds``, ``device``).

    The checkpoint (float32 weights, optimizer, step) is rewritten atomically every
    ``config.checkpoint_every`` steps (:func:`book.runs.run_in_stages`), so an interrupted
    run resumes where it stopped, with the same result. Batch ``i`` is drawn from a generator
    seeded with ``(seed, i)``, so a resumed run sees the same batches.
    """
    run = training_run(task, config, name=name, results_dir=results_dir, retrain=retrain)
    model = _initial_model(task, config)

    def start() -> ReversalTraining:
        return ReversalTraining(model, task, config, torch.device(device or default_device()),
                                log)

    def logged(training: ReversalTraining) -> None:  # after the checkpoint: it can be resumed
        if log:
            log(f"step {training.step}/{config.steps}  loss {training.losses[-1]:.4f}  "
                f"{training.seconds:.0f} s")

    record, weights, _ = run_in_stages(run, start, after_stage=logged)
    model.load_state_dict(weights)
    return model.cpu().to(dtype).eval(), record


class ReversalTraining(Stages):
    """A reversal run between two checkpoints: the model, the optimizer, the step, the losses
    so far and the seconds spent. A stage is ``config.checkpoint_every`` steps."""

    checkpointed = ("model", "optimizer", "step", "losses", "held_out", "seconds")

    def __init__(self, model: Transformer, task: ReversalTask, config: ReversalConfig,
                 device: torch.device, log: Callable[[str], None] | None) -> None:
        data = task.data()
        self.src, self.tgt = data["src_train"].to(device), data["tgt_train"].to(device)
        self.src_test, self.tgt_test = data["src_test"].to(device), data["tgt_test"].to(device)
        self.model, self.config, self.device, self.log = model.to(device), config, device, log
        model.train()
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.98))
        self.step, self.losses, self.held_out, self.seconds = 0, [], [], 0.0

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if self.log:
            self.log(f"resuming at step {self.step}")

    def done(self) -> bool:
        return self.step >= self.config.steps

    def stage(self) -> None:
        """Train up to the next checkpoint, measuring the held-out loss on the way."""
        config = self.config
        loss_fn = nn.CrossEntropyLoss(ignore_index=PAD)
        amp = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=config.autocast)
        start = time.perf_counter() - self.seconds
        every = config.checkpoint_every
        end = min(config.steps, (self.step // every + 1) * every)  # the next checkpoint's step
        while self.step < end:
            g = torch.Generator().manual_seed(config.seed * 1_000_003 + self.step)
            idx = torch.randint(0, len(self.src), (config.batch_size,), generator=g).to(self.device)
            x, y = self.src[idx], self.tgt[idx]
            for group in self.optimizer.param_groups:
                group["lr"] = config.lr_at(self.step)
            with amp:
                logits = self.model(x, y[:, :-1])  # teacher forcing: token t+1 from tokens <= t
            loss = loss_fn(logits.float().reshape(-1, logits.shape[-1]), y[:, 1:].reshape(-1))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.losses.append(loss.item())
            self.step += 1
            if self.step % config.eval_every == 0 or self.step == config.steps:
                with amp:
                    self.held_out.append({"step": self.step, "loss": held_out_loss(
                        self.model, self.src_test, self.tgt_test)})
            self.seconds = time.perf_counter() - start

    def outcome(self) -> tuple[dict[str, torch.Tensor], dict]:
        return self.model.state_dict(), {
            "history": [{"step": i + 1, "loss": loss} for i, loss in enumerate(self.losses)],
            "held_out": self.held_out, "seconds": self.seconds, "device": str(self.device)}


def held_out_loss(model: Transformer, src: torch.Tensor, tgt: torch.Tensor,
                  batch_size: int = 1000) -> float:
    """Cross-entropy per target token (padding left out) of teacher-forced ``model(src,
    tgt[:, :-1])`` against ``tgt[:, 1:]``, as in training but in eval mode, without
    gradients; every module's mode is given back."""
    total, tokens = 0.0, 0
    with torch.no_grad(), eval_mode(model):
        for i in range(0, len(src), batch_size):
            s, t = src[i : i + batch_size], tgt[i : i + batch_size]
            logits = model(s, t[:, :-1]).float()
            target = t[:, 1:]
            total += nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 target.reshape(-1), ignore_index=PAD,
                                                 reduction="sum").item()
            tokens += (target != PAD).sum().item()
    return total / tokens


def exact_match(model: Transformer, src: torch.Tensor, tgt: torch.Tensor,
                batch_size: int = 1000) -> float:
    """Fraction of sequences whose greedy decoding equals ``tgt[:, 1:]`` token for token."""
    device = next(model.parameters()).device
    right = 0
    for i in range(0, len(src), batch_size):
        s, t = src[i : i + batch_size].to(device), tgt[i : i + batch_size, 1:].to(device)
        right += (model.generate(s, t.shape[1]) == t).all(dim=1).sum().item()
    return right / len(src)


def with_max_len(model: Transformer, max_len: int) -> Transformer:
    """A copy of ``model`` with room for ``max_len`` positions: the same weights (positions
    are sinusoids, defined for every position, not learnt), a longer table and causal mask."""
    with torch.random.fork_rng(devices=[]):
        longer = Transformer(replace(model.config, max_len=max_len, dtype=model.dtype))
    longer.load_state_dict(model.state_dict())
    return longer.to(next(model.parameters()).device).eval()


@torch.no_grad()
def accuracy_by_length(model: Transformer, task: ReversalTask, lengths: Iterable[int],
                       n: int = 200, seed: int = 0) -> pd.DataFrame:
    """Greedy decoding, length by length: up to ``n`` held-out sequences of each length the
    task trains on, and ``n`` fresh random sequences of each length beyond it (positions no
    training sequence reached). Per length: ``sequences``, ``exact_match``, ``digits_right``
    (the fraction of target positions, digits and EOS, decoded right) and ``trained_length``.
    """
    lengths = [positive_int("length", n_digits) for n_digits in lengths]
    wide = replace(task, max_len=max(task.max_len, *lengths))
    extended = with_max_len(model, wide.max_len + 2)
    held_out = [tuple(t - DIGIT_OFFSET for t in row.tolist() if t >= DIGIT_OFFSET)
                for row in task.data()["src_test"]]
    g = torch.Generator().manual_seed(seed)
    seqs = []
    for length in lengths:
        if length <= task.max_len:
            seqs += [s for s in held_out if len(s) == length][:n]
        else:
            seqs += [tuple(torch.randint(0, 10, (length,), generator=g).tolist())
                     for _ in range(n)]
    src, tgt = wide.tensors(seqs)
    target = tgt[:, 1:]
    device = next(model.parameters()).device
    right = extended.generate(src.to(device), target.shape[1]).cpu() == target  # one batch
    table = pd.DataFrame({"length": [len(s) for s in seqs],
                          "exact_match": right.all(1).float().numpy(),
                          "right": (right & (target != PAD)).sum(1).numpy(),
                          "positions": (target != PAD).sum(1).numpy()})
    table = table.groupby("length").agg(sequences=("exact_match", "size"),
                                        exact_match=("exact_match", "mean"),
                                        right=("right", "sum"), positions=("positions", "sum"))
    table["digits_right"] = table.pop("right") / table.pop("positions")
    table["trained_length"] = table.index <= task.max_len
    return table


@torch.no_grad()
def attention_maps(model: Transformer, src: torch.Tensor,
                   tgt: torch.Tensor) -> dict[str, torch.Tensor]:
    """The softmax outputs ``[B, h, Lq, Lk]`` of every attention block, keyed by block."""
    maps = {}

    def keep(block: str) -> Callable:
        return lambda module, inputs, output: maps.__setitem__(block, output.float().cpu())

    # encoder.self_attn.attention.softmax -> encoder.self_attn
    softmaxes = [(module, keep(name.rsplit(".", 2)[0])) for name, module in model.named_modules()
                 if isinstance(module, Softmax)]
    with forward_hooks(softmaxes):
        model(src, tgt)
    return maps


def anti_diagonal_attention(cross: torch.Tensor, src: torch.Tensor) -> pd.DataFrame:
    """How well cross-attention follows the reversal: query ``i`` should look at ``L - 1 - i``.

    ``cross``: cross-attention weights ``[N, h, T, S]`` (from :func:`attention_maps`),
    ``src``: the sources ``[N, S]`` (``L`` = non-padding tokens). Over the first ``L`` queries
    of every sequence, per head and for the mean of the heads: the weight on ``L - 1 - i``,
    the weight on it and its two neighbours, and how often it gets the largest weight.
    """
    weights = torch.cat([cross, cross.mean(1, keepdim=True)], dim=1).float()  # (N, h + 1, T, S)
    rows = []
    for n, length in enumerate((src != PAD).sum(1).tolist()):
        i = torch.arange(length)
        j = length - 1 - i  # the source position query i must copy
        # the first L queries, a zero column either side: key j is column j + 1
        w = nn.functional.pad(weights[n, :, :length], (1, 1))  # (h + 1, L, S + 2)
        on = w[:, i, j + 1]  # (h + 1, L)
        rows.append((on, w[:, i, j] + on + w[:, i, j + 2], (w.argmax(-1) == j + 1).float()))
    heads = [f"head {k}" for k in range(cross.shape[1])] + ["mean of heads"]
    stats = [torch.cat([r[k] for r in rows], dim=1).mean(1) for k in range(3)]
    return pd.DataFrame({"weight on L-1-i": stats[0], "weight within 1": stats[1],
                         "largest at L-1-i": stats[2]}, index=pd.Index(heads, name="head"))
