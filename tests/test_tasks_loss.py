"""Batching, the two-sided binary task loss, accuracy and evaluation."""

from __future__ import annotations

import math

import pytest
import torch

from sparsecircuits.errors import InputError
from sparsecircuits.model import ModelConfig, SparseTransformer
from sparsecircuits.tasks import (
    EncodedPair,
    Pair,
    TaskBatch,
    evaluate_tasks,
    final_logits,
    get_task,
    make_batch,
    prompt_scores,
    score_pairs,
    task_accuracy,
    task_loss,
)
from sparsecircuits.tasks.loss import worst_prompts


def _pair(prompt_ids, target, alt_prompt_ids, alt) -> EncodedPair:
    return EncodedPair(Pair("a", "b", "c", "d"), tuple(prompt_ids), target, tuple(alt_prompt_ids), alt)


PAIRS = [_pair([5, 6, 7], 1, [8, 7], 2), _pair([9], 3, [4, 4, 4, 9], 0)]


def test_make_batch_layout_and_padding():
    batch = make_batch(PAIRS, pad_id=11)
    assert len(batch) == 4
    assert batch.tokens.tolist() == [
        [5, 6, 7, 11],
        [9, 11, 11, 11],
        [8, 7, 11, 11],
        [4, 4, 4, 9],
    ]
    assert batch.last_pos.tolist() == [2, 0, 1, 3]
    # A rows expect target over alt; B rows the reverse.
    assert batch.correct.tolist() == [1, 3, 2, 0]
    assert batch.wrong.tolist() == [2, 0, 1, 3]
    assert batch.tokens.dtype == torch.long
    moved = batch.to("cpu")
    assert isinstance(moved, TaskBatch) and torch.equal(moved.tokens, batch.tokens)
    with pytest.raises(InputError, match="no pairs"):
        make_batch([])


def test_loss_and_accuracy_match_hand_computation():
    batch = make_batch(PAIRS)
    # Final-position logits over a vocabulary of 4; rows follow the batch layout above.
    last = torch.tensor(
        [
            [0.0, 2.0, -1.0, 0.0],  # A1: correct 1 (2.0) vs wrong 2 (-1.0)
            [0.5, 0.0, 0.0, 0.5],  # A2: correct 3 (0.5) vs wrong 0 (0.5): a tie
            [0.0, 1.0, 0.0, 0.0],  # B1: correct 2 (0.0) vs wrong 1 (1.0)
            [3.0, 0.0, 0.0, 1.0],  # B2: correct 0 (3.0) vs wrong 3 (1.0)
        ]
    )

    def nll(c: float, w: float) -> float:
        return -math.log(math.exp(c) / (math.exp(c) + math.exp(w)))

    expected_rows = [nll(2.0, -1.0), nll(0.5, 0.5), nll(0.0, 1.0), nll(3.0, 1.0)]
    rows = task_loss(last, batch, reduction="none")
    assert rows.tolist() == pytest.approx(expected_rows, abs=1e-6)
    assert rows[1].item() == pytest.approx(math.log(2))
    # The mean is -1/2 [log p_A(target) + log p_B(alt)] averaged over the two pairs.
    assert task_loss(last, batch).item() == pytest.approx(sum(expected_rows) / 4, abs=1e-6)
    assert task_accuracy(last, batch) == 0.5  # rows 0 and 3 right, the tie and row 2 wrong

    # The same logits placed at last_pos of [M, T, V] logits give the same loss.
    full = torch.randn(4, 4, 4)
    full[torch.arange(4), batch.last_pos] = last
    assert torch.equal(final_logits(full, batch), last)
    assert task_loss(full, batch).item() == pytest.approx(task_loss(last, batch).item())
    assert torch.allclose(task_loss(torch.zeros(4, 4), batch), torch.tensor(math.log(2)))
    with pytest.raises(InputError, match="reduction"):
        task_loss(last, batch, reduction="sum")
    with pytest.raises(InputError, match="do not match"):
        task_loss(torch.zeros(3, 4), batch)


def test_score_pairs_reports_mean_accuracy_and_standard_error():
    """score_pairs on a stand-in model whose final logits are the hand-computed rows above,
    in batches of one pair: the loss's standard error is the rows' sample std / sqrt(4)."""
    rows = {5: [0.0, 2.0, -1.0, 0.0], 9: [0.5, 0.0, 0.0, 0.5], 8: [0.0, 1.0, 0.0, 0.0], 4: [3.0, 0.0, 0.0, 1.0]}
    table = torch.zeros(10, 4)
    for first, logits in rows.items():
        table[first] = torch.tensor(logits)

    def model(tokens):
        return table[tokens[:, 0]].unsqueeze(1).expand(-1, tokens.shape[1], -1)

    def nll(c: float, w: float) -> float:
        return math.log(1 + math.exp(w - c))

    expected = [nll(2.0, -1.0), nll(0.5, 0.5), nll(0.0, 1.0), nll(3.0, 1.0)]
    loss, acc, se = score_pairs(model, PAIRS, batch_size=1)
    mean = sum(expected) / 4
    assert loss == pytest.approx(mean) and acc == 0.5
    assert se == pytest.approx(math.sqrt(sum((x - mean) ** 2 for x in expected) / 3 / 4))


def test_prompt_scores_keep_a_then_b_order_across_batches_and_name_the_worst_prompts():
    """Per-prompt losses come back as A1, A2, B1, B2 even when each batch holds one pair,
    and worst_prompts names the side, the expected answer and the prompt of each."""
    table = torch.zeros(10, 4)
    for first, logits in {5: [0.0, 2.0, -1.0, 0.0], 9: [0.5, 0.0, 0.0, 0.5],
                          8: [0.0, 1.0, 0.0, 0.0], 4: [3.0, 0.0, 0.0, 1.0]}.items():
        table[first] = torch.tensor(logits)

    def model(tokens):
        return table[tokens[:, 0]].unsqueeze(1).expand(-1, tokens.shape[1], -1)

    pairs = [EncodedPair(Pair("p1", "t1", "q1", "u1"), (5, 6, 7), 1, (8, 7), 2),
             EncodedPair(Pair("p2", "t2", "q2", "u2"), (9,), 3, (4, 4, 4, 9), 0)]
    losses, right = prompt_scores(model, pairs, batch_size=1)
    expected = [math.log(1 + math.exp(w - c)) for c, w in [(2.0, -1.0), (0.5, 0.5), (0.0, 1.0), (3.0, 1.0)]]
    assert losses.tolist() == pytest.approx(expected)
    assert right.tolist() == [True, False, False, True]
    worst = worst_prompts(losses, pairs, 2)
    assert [(w.side, w.answer, w.prompt) for w in worst] == [("B", "u1", "q1"), ("A", "t2", "p2")]
    assert worst[0].loss == pytest.approx(expected[2])
    assert worst_prompts(losses, pairs, 0) == ()


def test_loss_has_gradients():
    batch = make_batch(PAIRS)
    logits = torch.zeros(4, 5, 4, requires_grad=True)
    task_loss(logits, batch).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def _tiny_model(vocab: int, n_ctx: int = 128) -> SparseTransformer:
    cfg = ModelConfig(n_layer=1, d_model=32, n_head=2, d_head=16, d_mlp=64, vocab_size=vocab, n_ctx=n_ctx)
    return SparseTransformer(cfg).eval()


def test_right_padding_gives_the_logits_of_each_prompt_alone(stdlib_tokenizer):
    pairs = get_task("bracket_counting").generate(stdlib_tokenizer, 6, seed=0)
    lengths = {len(p.prompt_ids) for p in pairs} | {len(p.alt_prompt_ids) for p in pairs}
    assert len(lengths) > 2  # prompts of different lengths
    model = _tiny_model(stdlib_tokenizer.get_vocab_size())
    batch = make_batch(pairs, pad_id=0)
    with torch.no_grad():
        batched = final_logits(model(batch.tokens), batch)
        prompts = [p.prompt_ids for p in pairs] + [p.alt_prompt_ids for p in pairs]
        alone = torch.stack([model(torch.tensor([ids]))[0, -1] for ids in prompts])
    assert torch.allclose(batched, alone, atol=1e-5)


def test_evaluate_tasks_on_a_random_model(stdlib_tokenizer):
    model = _tiny_model(stdlib_tokenizer.get_vocab_size())
    model.train()
    tasks = [get_task("single_double_quote"), get_task("var_if")]
    results = evaluate_tasks(model, stdlib_tokenizer, tasks, n=20, batch_size=8, progress=False)
    assert model.training  # the training flag is restored
    assert [r.name for r in results] == ["single_double_quote", "var_if"]
    for r in results:
        assert r.n_pairs == 20
        assert 0.0 <= r.accuracy <= 1.0
        assert abs(r.loss - math.log(2)) < 0.2  # a random model is near chance
        assert r.solved == (r.loss <= 0.15)
    # Batch size does not change the score; a larger target loss counts the task solved.
    again = evaluate_tasks(model, stdlib_tokenizer, tasks[:1], n=20, batch_size=20,
                           target_loss=10.0, progress=False)
    assert again[0].loss == pytest.approx(results[0].loss, abs=1e-6)
    assert again[0].solved and again[0].target_loss == 10.0
    assert all(0 < r.loss_se < 0.2 for r in results)
    # The two sides' means average to the loss; `worst` lists the highest losses, descending.
    for r in results:
        assert (r.loss_a + r.loss_b) / 2 == pytest.approx(r.loss)
        assert r.worst == ()
    listed = evaluate_tasks(model, stdlib_tokenizer, tasks[:1], n=20, worst=3, progress=False)[0]
    assert len(listed.worst) == 3 and listed.loss == pytest.approx(results[0].loss, abs=1e-6)
    losses = [w.loss for w in listed.worst]
    assert losses == sorted(losses, reverse=True) and losses[0] >= max(listed.loss_a, listed.loss_b)
    generated = [p.pair for p in tasks[0].generate(stdlib_tokenizer, 20, split="test")]
    sides = {("A", p.prompt, p.target) for p in generated} | {("B", p.alt_prompt, p.alt) for p in generated}
    assert all((w.side, w.prompt, w.answer) in sides for w in listed.worst)
    with pytest.raises(InputError, match="worst"):
        evaluate_tasks(model, stdlib_tokenizer, tasks[:1], n=2, worst=-1, progress=False)


def test_evaluate_rejects_prompts_longer_than_the_context(stdlib_tokenizer):
    model = _tiny_model(stdlib_tokenizer.get_vocab_size(), n_ctx=8)
    with pytest.raises(InputError, match="context is 8"):
        evaluate_tasks(model, stdlib_tokenizer, [get_task("var_if")], n=2, progress=False)
    small_vocab = _tiny_model(100)
    with pytest.raises(InputError, match="vocabulary of 100"):
        evaluate_tasks(small_vocab, stdlib_tokenizer, [get_task("var_if")], n=2, progress=False)
