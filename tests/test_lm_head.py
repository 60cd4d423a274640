"""The CPU LM head (`training.lm_head`) against TRL's own chunked log-prob kernel."""

from __future__ import annotations

import pytest
import torch
from trl.kernels import ChunkedLogProbFunction

from cai_bootstrap.training import lm_head
from cai_bootstrap.training.lm_head import TokenChunkedLogProbs, cpu_fast_lm_head

OUTPUTS = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1")


def _inputs(n=150, vocab=700, dim=32, dtype=torch.float32, bias=False, weight_grad=False, seed=0):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, dim, generator=gen).to(dtype).requires_grad_()
    weight = (torch.randn(vocab, dim, generator=gen) * 0.4).to(dtype).requires_grad_(weight_grad)
    b = (torch.randn(vocab, generator=gen) * 0.1).to(dtype).requires_grad_() if bias else None
    targets = torch.randint(0, vocab, (n,), generator=gen)
    # a third of the positions confident (target = argmax): the 1 - p_t cancellation case
    targets[: n // 3] = (hidden.detach().float() @ weight.detach().float().t()).argmax(-1)[: n // 3]
    return hidden, weight, b, targets


def _run(fn, hidden, weight, bias, targets, *, temperature=1.0, softcap=None, scale=1.0, entropy_weight=0.0):
    for t in (hidden, weight, bias):
        if t is not None:
            t.grad = None
    out = fn.apply(hidden, weight, bias, targets, temperature, 256, softcap, scale, OUTPUTS)
    loss = -out[0].mean() + entropy_weight * out[1].mean()
    loss.backward()
    grads = [None if t is None or t.grad is None else t.grad.clone() for t in (hidden, weight, bias)]
    return [None if o is None else o.detach() for o in out], grads


@pytest.mark.parametrize(
    "case",
    [
        dict(),
        dict(bias=True, weight_grad=True),
        dict(temperature=0.7, scale=0.5),
        dict(softcap=30.0, temperature=0.8, bias=True),  # recomputed in backward
        dict(entropy_weight=0.3),  # entropy gradient: recomputed in backward
    ],
)
@pytest.mark.parametrize("workspace", [False, True])
def test_same_outputs_and_gradients_as_trl(case, workspace, monkeypatch):
    monkeypatch.setattr(lm_head, "CHUNK_TOKENS", 64)  # several chunks and a ragged last one
    opts = {k: case[k] for k in ("temperature", "softcap", "scale", "entropy_weight") if k in case}
    inputs = _inputs(bias=case.get("bias", False), weight_grad=case.get("weight_grad", False))
    ref_out, ref_grads = _run(ChunkedLogProbFunction, *inputs, **opts)
    if workspace:
        with cpu_fast_lm_head():
            out, grads = _run(TokenChunkedLogProbs, *inputs, **opts)
            out2, _ = _run(TokenChunkedLogProbs, *inputs, **opts)  # reused buffers: same result
        torch.testing.assert_close(out2[0], out[0])
    else:
        out, grads = _run(TokenChunkedLogProbs, *inputs, **opts)
    for name, a, b in zip(OUTPUTS, out, ref_out):
        if name == "is_top1":
            assert torch.equal(a, b)
        else:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=name)
    for a, b in zip(grads, ref_grads):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_bf16_matches_trl_within_bf16_rounding():
    inputs = _inputs(n=300, vocab=2000, dim=64, dtype=torch.bfloat16)
    ref_out, ref_grads = _run(ChunkedLogProbFunction, *inputs)
    with cpu_fast_lm_head():
        out, grads = _run(TokenChunkedLogProbs, *inputs)
    torch.testing.assert_close(out[0], ref_out[0], rtol=1e-4, atol=1e-4)
    rel = (grads[0].float() - ref_grads[0].float()).norm() / ref_grads[0].float().norm()
    assert rel < 5e-3  # both round the logit gradient to bf16 once


def test_softmax_is_kept_only_when_a_gradient_is_needed(monkeypatch):
    hidden, weight, _, targets = _inputs()
    saved = []
    original = lm_head._saved_probs
    monkeypatch.setattr(lm_head, "_saved_probs", lambda *a: saved.append(a) or original(*a))
    with torch.no_grad():  # a reference pass: nothing kept
        TokenChunkedLogProbs.apply(hidden, weight, None, targets, 1.0, 256, None, 1.0, ("log_probs",))
    assert saved == []
    TokenChunkedLogProbs.apply(hidden, weight, None, targets, 1.0, 256, None, 1.0, ("log_probs",))
    assert len(saved) == 1
    monkeypatch.setattr(lm_head, "SAVE_BUDGET_BYTES", 10)  # over budget: recomputed instead
    out = TokenChunkedLogProbs.apply(hidden, weight, None, targets, 1.0, 256, None, 1.0, ("log_probs",))
    assert len(saved) == 1
    out[0].sum().backward()
    assert hidden.grad is not None and torch.isfinite(hidden.grad).all()


def test_two_forwards_before_backward_do_not_share_the_saved_buffer():
    hidden, weight, _, targets = _inputs()
    ChunkedLogProbFunction.apply(hidden, weight, None, targets, 1.0, 256, None, 1.0, ("log_probs",))[0].sum().backward()
    ref_grads = [hidden.grad.clone()]
    with cpu_fast_lm_head():
        hidden.grad = None
        first = TokenChunkedLogProbs.apply(hidden, weight, None, targets, 1.0, 256, None, 1.0, ("log_probs",))[0]
        second = TokenChunkedLogProbs.apply(hidden * 0.5, weight, None, targets, 1.0, 256, None, 1.0,
                                            ("log_probs",))[0]
        first.sum().backward()
        torch.testing.assert_close(hidden.grad, ref_grads[0], rtol=1e-4, atol=1e-7)
        second.sum().backward()  # its own softmax, not the first one's
        both = hidden.grad.clone()
    hidden.grad = None
    ChunkedLogProbFunction.apply(hidden * 0.5, weight, None, targets, 1.0, 256, None, 1.0,
                                 ("log_probs",))[0].sum().backward()
    torch.testing.assert_close(both, ref_grads[0] + hidden.grad, rtol=1e-4, atol=1e-6)


def test_context_swaps_trls_function_for_cpu_tensors_only():
    import trl.trainer.utils as trl_utils

    original = trl_utils._ChunkedLogProbFunction
    with cpu_fast_lm_head():
        assert trl_utils._ChunkedLogProbFunction is not original
        assert lm_head._workspace is not None
    assert trl_utils._ChunkedLogProbFunction is original and lm_head._workspace is None
    with cpu_fast_lm_head(enabled=False):
        assert trl_utils._ChunkedLogProbFunction is original


def test_log_probs_only_skips_the_metric_outputs_and_keeps_the_log_probs():
    hidden, weight, _, targets = _inputs()
    with torch.no_grad():
        full = TokenChunkedLogProbs.apply(hidden, weight, None, targets, 1.0, 256, None, 1.0, OUTPUTS)
        with lm_head.log_probs_only():
            only = TokenChunkedLogProbs.apply(hidden, weight, None, targets, 1.0, 256, None, 1.0, OUTPUTS)
    assert all(o is None for o in only[1:]) and all(o is not None for o in full[1:])
    torch.testing.assert_close(only[0], full[0])
    assert not lm_head._log_probs_only  # reset on exit


def test_dpo_reference_pass_asks_for_log_probs_only_inside_the_context():
    from trl import DPOTrainer

    original = DPOTrainer.compute_ref_log_probs
    seen = []

    def spy(self, model, inputs):
        seen.append(lm_head._log_probs_only)
        return "ref"

    DPOTrainer.compute_ref_log_probs = spy
    try:
        with cpu_fast_lm_head():
            assert DPOTrainer.compute_ref_log_probs(object(), None, None) == "ref"
        assert DPOTrainer.compute_ref_log_probs is spy  # restored on exit
        spy(object(), None, None)  # outside the context: full outputs
    finally:
        DPOTrainer.compute_ref_log_probs = original
    assert seen == [True, False]


def test_frozen_fp32_head_under_bf16_autocast_is_cast_once_and_recast_when_it_changes():
    """Full fine-tuning: a float32 model, bf16 autocast, the tied head frozen."""
    hidden, weight, _, targets = _inputs(n=200, vocab=900, dim=32)
    with torch.autocast("cpu", dtype=torch.bfloat16), cpu_fast_lm_head():
        out, grads = _run(TokenChunkedLogProbs, hidden, weight, None, targets)
        cached = lm_head._workspace.cast[1]
        assert cached.dtype == torch.bfloat16 and torch.equal(cached, weight.detach().to(torch.bfloat16))
        again, grads2 = _run(TokenChunkedLogProbs, hidden, weight, None, targets)
        assert lm_head._workspace.cast[1] is cached  # no second cast of an unchanged weight
        torch.testing.assert_close(again[0], out[0], rtol=0, atol=0)
        torch.testing.assert_close(grads2[0], grads[0], rtol=0, atol=0)
        with torch.no_grad():
            weight.mul_(0.5)  # an in-place change bumps the version: the cast is redone
        changed, _ = _run(TokenChunkedLogProbs, hidden, weight, None, targets)
        assert lm_head._workspace.cast[1] is not cached
    ref_out, _ = _run(ChunkedLogProbFunction, hidden, weight.detach().to(torch.bfloat16), None, targets)
    torch.testing.assert_close(changed[0], ref_out[0].float(), rtol=2e-2, atol=2e-2)
