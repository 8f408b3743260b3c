"""The 16-bit Transformer: equations, dtypes, the fp16 hard cases, PyTorch equivalence, counts,
and the training run's checkpoints."""

import math

import pytest
import sympy
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from book.opcount import OP_KINDS, count_ops
from book.transformer import (
    BLOCKS,
    BOS,
    EOS,
    PAD,
    LayerNorm,
    PositionalEncoding,
    ReversalTask,
    Softmax,
    TrainConfig,
    Transformer,
    activation_bytes,
    anti_diagonal_attention,
    attention_maps,
    block_of,
    closed_form_counts,
    greedy_decode,
    inference_times,
    parameter_bytes,
    train_reversal,
    verify_against_torch,
)


def tokens(batch, length, lengths=None, seed=0):
    """Random digit tokens [batch, length], right-padded to the given lengths."""
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(3, 13, (batch, length), generator=g)
    if lengths is not None:
        t[torch.arange(length) >= torch.tensor(lengths)[:, None]] = PAD
    return t


def model_in(dtype, seed=0):
    torch.manual_seed(seed)
    return Transformer(13, 13, dtype=dtype, max_len=16).eval()


# --- equations ----------------------------------------------------------------------------


def test_positional_encoding_is_equations_10_and_11():
    pe = PositionalEncoding(256, max_len=50, dtype=torch.float32).pe
    for pos, i in ((0, 0), (1, 0), (7, 3), (49, 127), (20, 64)):
        angle = pos / 10000 ** (2 * i / 256)
        assert pe[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
        assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    x = torch.zeros(2, 5, 256, dtype=torch.float16)
    assert torch.equal(PositionalEncoding(256)(x)[1], PositionalEncoding(256).pe[:5])


def test_layer_norm_and_softmax_match_pytorch_in_float32():
    x = torch.randn(3, 7, 256) * 3 + 1
    ln = LayerNorm(256, dtype=torch.float32)
    with torch.no_grad():
        ln.weight.normal_()
        ln.bias.normal_()
    ref = nn.functional.layer_norm(x, (256,), ln.weight, ln.bias, 1e-5)
    torch.testing.assert_close(ln(x), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(Softmax()(x), torch.softmax(x, -1), atol=1e-7, rtol=1e-6)


def test_decoder_is_causal_and_padding_is_ignored():
    model = model_in(torch.float32)
    src, tgt = tokens(2, 8, [8, 5], seed=1), tokens(2, 6, seed=2)
    out = model(src, tgt)
    later = tgt.clone()
    later[:, 4:] = tokens(2, 2, seed=3)  # change only the last two target tokens
    torch.testing.assert_close(model(src, later)[:, :4], out[:, :4], atol=0, rtol=0)
    assert not torch.allclose(model(src, later)[:, 4:], out[:, 4:])
    padded = torch.cat([src, torch.full((2, 3), PAD)], dim=1)  # more padding: same output
    torch.testing.assert_close(model(padded, tgt), out, atol=1e-6, rtol=1e-5)


# --- 16 bits throughout ---------------------------------------------------------------------


class _DtypesOfEveryOp(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.seen = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                self.seen.setdefault(t.dtype, set()).add(str(func))
        return out


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_every_tensor_is_16_bit(dtype):
    model = model_in(dtype)
    assert {p.dtype for p in model.parameters()} == {dtype}
    assert {b.dtype for b in model.buffers()} == {dtype}
    outputs = []
    hooks = [m.register_forward_hook(lambda m, i, o, name=name: outputs.append((name, o)))
             for name, m in model.named_modules()]
    src, tgt = tokens(2, 9, [9, 4]), tokens(2, 7, [7, 3])
    with torch.no_grad(), _DtypesOfEveryOp() as mode:
        logits = model(src, tgt)
    for h in hooks:
        h.remove()
    assert logits.dtype == dtype
    assert {name for name, _ in outputs} == {name for name, _ in model.named_modules()}
    wrong = [name for name, o in outputs if o.dtype != dtype]
    assert not wrong, f"outputs not in {dtype}: {wrong}"
    # inside the modules too: every floating-point result of every aten op
    assert set(mode.seen) == {dtype}, {k: sorted(v) for k, v in mode.seen.items()}


def test_softmax_survives_large_fp16_logits():
    x = torch.tensor([[60000.0, 59990.0, -60000.0, 0.0], [12.0, 11.0, 10.0, -65504.0]],
                     dtype=torch.float16)
    assert torch.exp(x).isinf().any()  # the naive formula overflows here
    p = Softmax()(x)
    assert p.dtype == torch.float16 and torch.isfinite(p).all()
    torch.testing.assert_close(p.double(), torch.softmax(x.double(), -1), atol=1e-3, rtol=0)


def test_softmax_of_a_fully_masked_row_is_zero_not_nan():
    x = torch.tensor([[-math.inf] * 4, [0.0, -math.inf, 1.0, -math.inf]], dtype=torch.float16)
    p = Softmax()(x)
    assert torch.equal(p[0], torch.zeros(4, dtype=torch.float16))
    torch.testing.assert_close(p[1].double(), torch.softmax(x[1].double(), -1), atol=1e-3,
                               rtol=0)


def test_layer_norm_survives_large_fp16_rows():
    g = torch.Generator().manual_seed(0)
    x64 = torch.randn(4, 256, generator=g, dtype=torch.float64) * 3000 + 1000
    x64[3] = 5.0  # a constant row: zero variance
    x = x64.half()
    xc = x - x.mean(-1, keepdim=True)
    assert torch.isinf((xc * xc).mean(-1)).any()  # the textbook fp16 variance overflows
    y = LayerNorm(256)(x)
    assert y.dtype == torch.float16 and torch.isfinite(y).all()
    ref = nn.functional.layer_norm(x.double(), (256,), eps=1e-5)
    torch.testing.assert_close(y.double(), ref, atol=1e-2, rtol=0)
    assert torch.equal(y[3], torch.zeros(256, dtype=torch.float16))


def test_an_all_padding_sequence_gives_finite_output():
    model = model_in(torch.float16)
    src = tokens(2, 6, [6, 0])  # the second source is nothing but padding
    tgt = tokens(2, 5, [5, 5])
    with torch.no_grad():
        out = model(src, tgt)
        maps = attention_maps(model, src, tgt)
    assert torch.isfinite(out).all()
    assert torch.equal(maps["decoder.cross_attn"][1], torch.zeros(8, 5, 6))
    assert torch.equal(maps["encoder.self_attn"][1], torch.zeros(8, 6, 6))


# --- against torch.nn.Transformer -----------------------------------------------------------


def test_matches_pytorch_transformer():
    table = verify_against_torch(batch=8, S=20, T=15, seed=1,
                                 dtypes=(torch.float32, torch.float16))
    err = table.set_index(["dtype", "model"])
    assert err.loc[("float32", "ours"), "max_abs_error"] < 1e-5
    # fp16: within a small factor of PyTorch's own fp16 output (its LayerNorm kernel works
    # in float32 inside); with that kernel, ours is as close as PyTorch's
    torch16, ours16 = err.loc[("float16", "PyTorch")], err.loc[("float16", "ours")]
    assert 1e-4 < torch16["mean_abs_error"] < 2e-3
    assert ours16["mean_abs_error"] < 1.5 * torch16["mean_abs_error"]
    assert ours16["max_abs_error"] < 2.5 * torch16["max_abs_error"]
    hybrid = err.loc[("float16", "ours with nn.LayerNorm"), "mean_abs_error"]
    assert hybrid < 1.1 * torch16["mean_abs_error"]


@pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")
def test_load_torch_weights_checks_what_it_copies():
    def ref(**kw):
        args = dict(d_model=256, nhead=8, num_encoder_layers=1, num_decoder_layers=1,
                    dim_feedforward=1024, dropout=0.0, batch_first=True)
        return nn.Transformer(**(args | kw))

    ours = Transformer(13, 13, dtype=torch.float32)
    with pytest.raises(ValueError, match="shape"):
        ours.load_torch_weights(ref(dim_feedforward=512))
    with pytest.raises(ValueError, match="one encoder layer"):
        ours.load_torch_weights(ref(num_encoder_layers=2))
    with pytest.raises(ValueError, match="post-norm"):
        ours.load_torch_weights(ref(norm_first=True))
    with pytest.raises(ValueError, match="8 heads"):
        ours.load_torch_weights(ref(nhead=4))
    r = ref()
    ours.load_torch_weights(r)
    w = r.decoder.layers[0].multihead_attn.in_proj_weight
    assert torch.equal(ours.decoder.cross_attn.k_proj.weight, w[256:512])
    assert torch.equal(ours.encoder_norm.bias, r.encoder.norm.bias)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="dtype"):
        Transformer(13, 13, dtype=torch.float64)
    with pytest.raises(ValueError, match="divisible"):
        Transformer(13, 13, d_model=250)
    with pytest.raises(ValueError, match="src_vocab"):
        Transformer(0, 13)
    model = model_in(torch.float32)
    with pytest.raises(ValueError, match="src must be token ids"):
        model(torch.zeros(2, 3), tokens(2, 3))
    with pytest.raises(ValueError, match="max_len"):
        model(tokens(1, 20), tokens(1, 3))


# --- counts -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("S", "T", "bias"), [(1, 1, False), (6, 5, False), (10, 12, True)])
def test_count_ops_matches_the_closed_forms(S, T, bias):
    model = model_in(torch.float32)
    table = count_ops(model, (tokens(1, S), tokens(1, T)), bias=bias)
    assert len(table) == 53  # 19 rows for the encoder side, 34 for the decoder side
    got = table.groupby(table["layer"].map(block_of))[list(OP_KINDS)].sum()
    formulas = closed_form_counts(S, T, tgt_vocab=13, bias=bias)
    assert list(formulas) == list(BLOCKS)
    for block in BLOCKS:
        for kind in OP_KINDS:
            assert got.loc[block, kind] == formulas[block][kind], (block, kind)
    act = activation_bytes(table, torch.float16)
    for block in BLOCKS:
        assert act.loc[block, "activations"] == formulas[block]["activations"], block
    assert act.loc["total", "bytes"] == 2 * sum(f["activations"] for f in formulas.values())
    # the rows the issue asks for exist, each with its own kind
    kinds = dict(zip(table["layer"], table["kind"], strict=False))
    assert kinds["encoder.self_attn.attention.scores"] == "MatMul"
    assert kinds["decoder.cross_attn.attention.softmax"] == "Softmax"
    assert kinds["decoder.norm3"] == "LayerNorm"


def test_closed_forms_are_polynomials_in_S_and_T():
    S, T = sympy.symbols("S T", positive=True, integer=True)
    f = closed_form_counts(S, T, tgt_vocab=13)
    mults = sympy.expand(sum(b["mults"] for b in f.values()))
    assert sympy.Poly(mults, S, T).total_degree() == 2  # attention is quadratic
    exact = closed_form_counts(7, 4, tgt_vocab=13)
    assert mults.subs({S: 7, T: 4}) == sum(b["mults"] for b in exact.values())


def test_parameter_bytes():
    model = model_in(torch.float16)
    table = parameter_bytes(model)
    total = sum(p.numel() for p in model.parameters())
    assert table.loc["total", "parameters"] == total
    assert table.loc["total", "bytes"] == 2 * total
    ref = nn.Transformer(d_model=256, nhead=8, num_encoder_layers=1, num_decoder_layers=1,
                         dim_feedforward=1024, batch_first=True)
    extra = 2 * 13 * 256 + 256 * 13 + 13  # two embeddings, the output projection
    assert total == sum(p.numel() for p in ref.parameters()) + extra
    assert table.loc["encoder.ffn", "parameters"] == 256 * 1024 + 1024 + 1024 * 256 + 256


# --- the demonstration ---------------------------------------------------------------------------


def test_reversal_task():
    task = ReversalTask(n_train=2000, n_test=300, seed=3)
    d = task.data()
    assert d["src_train"].shape == (2000, 10) and d["tgt_test"].shape == (300, 12)
    train = {tuple(r[r != PAD].tolist()) for r in d["src_train"]}
    for s, t in zip(d["src_test"], d["tgt_test"], strict=True):
        digits = s[s != PAD]
        assert tuple(digits.tolist()) not in train
        assert t[0] == BOS and t[len(digits) + 1] == EOS
        assert torch.equal(t[1 : len(digits) + 1], digits.flip(0))
    assert torch.equal(task.data()["src_test"], d["src_test"])  # always the same
    assert len({tuple(r.tolist()) for r in d["src_test"]}) == 300  # distinct
    with pytest.raises(ValueError, match="outside the training set"):
        ReversalTask(max_len=1, n_train=500, n_test=5).data()  # only 10 sequences exist


def test_anti_diagonal_attention():
    src = torch.tensor([[3, 4, 5, PAD], [6, PAD, PAD, PAD]])
    exact, late = torch.zeros(2, 2, 5, 4), torch.zeros(2, 2, 5, 4)
    for n, length in enumerate((3, 1)):
        for i in range(length):
            exact[n, :, i, length - 1 - i] = 1
            late[n, :, i, min(length - i, 3)] = 1  # one position to the right of the target
    assert (anti_diagonal_attention(exact, src).to_numpy() == 1).all()
    stats = anti_diagonal_attention(late, src)
    assert (stats["weight on L-1-i"] == 0).all() and (stats["largest at L-1-i"] == 0).all()
    assert (stats["weight within 1"] == 1).all()


def test_inference_times_leaves_the_model_alone():
    model = model_in(torch.float32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    table = inference_times(model, tokens(1, 4), tokens(1, 3), min_run_time=0.01)
    assert list(table.index) == ["float16", "bfloat16", "float32"]
    assert (table["median_ms"] > 0).all() and table.loc["float32", "vs_float32"] == 1
    assert model.dtype == torch.float32
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_greedy_decode_pads_after_eos():
    model = model_in(torch.float32)
    with torch.no_grad():
        model.generator.bias[EOS] = 100  # every first prediction is EOS
    out = greedy_decode(model, tokens(3, 5), max_len=6)
    assert out.shape == (3, 6)
    assert (out[:, 0] == EOS).all() and (out[:, 1:] == PAD).all()


def test_cached_greedy_decode_equals_decoding_the_whole_prefix():
    model = model_in(torch.float32, seed=4)
    with torch.no_grad():
        model.generator.bias[[PAD, EOS]] = -100  # no padding, and run to the end
    src = tokens(4, 7, [7, 5, 3, 1])
    out = greedy_decode(model, src, max_len=9)
    with torch.no_grad():
        memory, src_mask = model.encode(src)
        ys = torch.full((4, 1), BOS)
        for _ in range(9):
            logits = model.decode(ys, memory, src_mask)  # (4, t, vocab): the whole prefix
            ys = torch.cat([ys, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, ys[:, 1:])
    assert len(out.unique()) > 3  # a real sequence of decisions, not one repeated token


def test_training_resumes_after_interruption_and_is_reused(tmp_path):
    config = TrainConfig(steps=4, batch_size=8, checkpoint_every=2, warmup=2)
    task = ReversalTask(n_train=200, n_test=20)

    def interrupt(message):
        raise KeyboardInterrupt(message)

    with pytest.raises(KeyboardInterrupt, match="step 2/4"):
        train_reversal(task, config, path=tmp_path / "a.pt", device="cpu", log=interrupt)
    messages = []
    resumed, history = train_reversal(task, config, path=tmp_path / "a.pt", device="cpu",
                                      dtype=torch.float32, log=messages.append)
    assert messages[0] == "resuming at step 2" and len(history["losses"]) == 4
    straight, _ = train_reversal(task, config, path=tmp_path / "b.pt", device="cpu",
                                 dtype=torch.float32)
    for a, b in zip(resumed.state_dict().values(), straight.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    messages.clear()
    again, _ = train_reversal(task, config, path=tmp_path / "a.pt", device="cpu",
                              log=messages.append)
    assert messages == [] and again.dtype == torch.float16  # reused, not retrained
    (tmp_path / "a.json").unlink()  # finished, but the history was never written
    train_reversal(task, config, path=tmp_path / "a.pt", device="cpu", log=messages.append)
    assert messages == [] and (tmp_path / "a.json").exists()
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0)
