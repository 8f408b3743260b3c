"""The digit-reversal demonstration: its data, its tokens, its training run and its analysis."""

import json

import pytest
import torch

from book.runs import Run
from book.transformer.model import BOS, EOS, PAD
from book.transformer.reversal import (
    DIGIT_OFFSET,
    VOCAB,
    ReversalConfig,
    ReversalTask,
    accuracy_by_length,
    anti_diagonal_attention,
    decode,
    encode,
    exact_match,
    held_out_loss,
    train_reversal,
    with_max_len,
)


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


def test_tokens_encode_and_decode_the_digits():
    assert encode([3, 1, 4]) == [3 + DIGIT_OFFSET, 1 + DIGIT_OFFSET, 4 + DIGIT_OFFSET]
    assert min(encode(range(10))) > max(PAD, BOS, EOS)
    assert decode(torch.tensor([BOS, *encode([0, 9, 5]), EOS, PAD])) == "0 9 5"
    src, tgt = ReversalTask().tensors([(2, 7, 1)])
    assert decode(src[0]) == "2 7 1" and decode(tgt[0]) == "1 7 2"


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


CONFIG = ReversalConfig(steps=4, batch_size=8, checkpoint_every=2, warmup=2, eval_every=3)
TASK = ReversalTask(n_train=200, n_test=20)


def train(tmp_path, name, **kw):
    return train_reversal(TASK, CONFIG, name=name, results_dir=tmp_path, device="cpu", **kw)


def same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                 b.state_dict().values(), strict=True))


def test_training_resumes_after_interruption_and_is_reused(tmp_path):
    def interrupt(message):
        raise KeyboardInterrupt(message)

    with pytest.raises(KeyboardInterrupt, match="step 2/4"):
        train(tmp_path, "a", log=interrupt)
    assert (tmp_path / "a.ckpt").exists() and not (tmp_path / "a.pt").exists()
    messages = []
    resumed, record = train(tmp_path, "a", dtype=torch.float32, log=messages.append)
    assert messages[0] == "resuming at step 2" and len(record["history"]) == 4
    assert record["history"][-1]["step"] == 4 and not (tmp_path / "a.ckpt").exists()
    assert [h["step"] for h in record["held_out"]] == [3, 4]  # every 3 steps, and the last
    straight, straight_record = train(tmp_path, "b", dtype=torch.float32)
    assert same_weights(resumed, straight)
    assert straight_record["held_out"] == record["held_out"]
    data = TASK.data()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        final = held_out_loss(straight.train(), data["src_test"], data["tgt_test"])
    assert final == pytest.approx(record["held_out"][-1]["loss"])
    assert straight.training  # held_out_loss leaves the mode as it found it
    messages.clear()
    again, stored = train(tmp_path, "a", log=messages.append)
    assert messages == [] and again.dtype == torch.float16  # reused, not retrained
    assert stored == record
    assert exact_match(again, *TASK.tensors([(1, 2)])) in (0.0, 1.0)


def test_a_stored_run_of_another_identity_is_retrained(tmp_path):
    model, _ = train(tmp_path, "a", dtype=torch.float32)
    # an older version of the model: its weights had other names and other code
    weights = torch.load(tmp_path / "a.pt")
    record = json.loads((tmp_path / "a.json").read_text())
    old = Run("a", {**record["identity"], "model_code": "0" * 16}, tmp_path)
    old.finish({k.replace("add_norm1.norm", "norm1"): v for k, v in weights.items()}, {})
    messages = []
    retrained, stored = train(tmp_path, "a", dtype=torch.float32, log=messages.append)
    assert messages[-1].startswith("step 4/4")  # trained again, not loaded, no crash
    assert same_weights(retrained, model)
    assert stored["identity"]["model_code"] != "0" * 16  # the stored run is the new one
    assert "encoder.add_norm1.norm.weight" in torch.load(tmp_path / "a.pt")


def test_bad_training_arguments_are_named():
    with pytest.raises(ValueError, match="steps must be a positive int"):
        ReversalConfig(steps=0)
    with pytest.raises(ValueError, match="lr must be"):
        ReversalConfig(lr=-1.0)


def test_a_longer_position_table_changes_nothing_else(tmp_path):
    model, _ = train(tmp_path, "short", dtype=torch.float32)
    longer = with_max_len(model, 40)
    assert longer.config.max_len == 40 and longer.pos.pe.shape[0] == 40
    src, tgt = TASK.tensors([(1, 2, 3), (4, 5)])
    torch.testing.assert_close(longer(src, tgt), model(src, tgt), rtol=0, atol=0)
    with pytest.raises(ValueError, match="max_len"):
        model(torch.full((1, 20), DIGIT_OFFSET), tgt[:1])
    assert longer(torch.full((1, 20), DIGIT_OFFSET), tgt[:1]).shape == (1, tgt.shape[1], VOCAB)


def test_accuracy_by_length_reaches_beyond_the_trained_lengths(tmp_path):
    model, _ = train(tmp_path, "short", dtype=torch.float32)
    table = accuracy_by_length(model, TASK, [5, 12], n=7)
    assert list(table.index) == [5, 12] and list(table["trained_length"]) == [True, False]
    assert table.loc[12, "sequences"] == 7
    assert table.loc[5, "sequences"] == min(7, sum(
        int((row != PAD).sum()) == 5 for row in TASK.data()["src_test"]))
    assert ((table["exact_match"] >= 0) & (table["exact_match"] <= table["digits_right"])).all()
    # a model that answers EOS at once gets no position of a 12-digit target right
    with torch.no_grad():
        model.generator.bias[EOS] = 1e4
    table = accuracy_by_length(model, TASK, [12], n=3)
    assert table.loc[12, "exact_match"] == 0 and table.loc[12, "digits_right"] == 0
