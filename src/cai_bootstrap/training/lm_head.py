"""Per-token log-probabilities through the LM head, fast on a CPU.

TRL's trainers score tokens with ``trl.kernels.ChunkedLogProbFunction``: the LM head
is applied in vocabulary tiles, and each tile is folded into online-logsumexp
statistics. On CUDA the fold is one Triton kernel. On a CPU it is a dozen separate
fp32 torch ops per tile, and the backward accumulates every tile's gradient GEMM in
fp32 (``a.float() @ b.float()``), at 40% of the bf16 matmul speed. With Gemma's 262k
vocabulary that made the LM head about half of an SFT step on the 2-core machine
(profiled: `aten::mul`, `aten::sub`, `aten::exp`, `aten::copy_` and fp32 `addmm_`
inside ``ChunkedLogProbFunctionBackward``).

`TokenChunkedLogProbs` computes the same outputs with the same signature, chunked
over *tokens* instead: each chunk of 256 positions gets its full-vocabulary logits
in one bf16 GEMM and one fused ``log_softmax``. When a gradient will be needed the
forward keeps the softmax (bf16, tokens x vocab, up to `SAVE_BUDGET_BYTES`), so the
backward is one multiply and one GEMM per chunk, with no second pass through the
head; otherwise (softcapped heads, an entropy gradient, huge batches) it recomputes
the logits in fp32. Rows of the hidden-state gradient belong to one chunk, so
nothing is accumulated across tiles and the result is rounded once. Chunk-sized
scratch tensors are reused across calls (fresh 268 MB tensors cost page faults).
Measured on the 2-core machine, 600 completion tokens of Gemma 3 270M: TRL's CPU
path 1.3 s forward + 4-5 s backward, this 1.4 s + 0.8 s.

`cpu_fast_lm_head` puts it in place of TRL's function for CPU tensors only, inside
a ``with`` block (GPU tensors keep TRL's Triton path). In the same block, DPO's
reference pass (``DPOTrainer.compute_ref_log_probs``) asks for log-probabilities
only: TRL requests entropy, mean logits and top-1 flags there too (the policy's
metric outputs), reads none of them, and they were half of that pass's LM-head time.
"""

from __future__ import annotations

import contextlib

import torch

#: Positions per chunk: big enough for an efficient GEMM, small enough that the
#: chunk's fp32 log-probabilities stay a few hundred MB with a 262k vocabulary.
CHUNK_TOKENS = 256
#: The forward keeps the softmax (bf16, ``tokens x vocab``) for backward, which then
#: needs no second LM-head GEMM, when it fits in this; else backward recomputes it.
SAVE_BUDGET_BYTES = 2 * 1024**3
_OPTIONAL = ("entropy", "log_sum_sq_probs", "mean_logits", "is_top1")


class _Workspace:
    """Chunk-sized scratch tensors reused across calls.

    Why: a fresh 268 MB tensor costs a page fault per page on first touch; on the
    2-core machine ``exp`` into a fresh tensor took 5x as long as into a reused one.
    """

    def __init__(self):
        self.buffers: dict[tuple, torch.Tensor] = {}
        #: The saved-softmax buffer lives from a forward to its backward; a second forward
        #: before that backward (never seen in TRL's trainers) gets a fresh tensor.
        self.saved_in_use = False
        #: A frozen head weight cast to the compute dtype, with the key it was cast under.
        self.cast: tuple[tuple, torch.Tensor] | None = None

    def weight_in(self, weight: torch.Tensor, dtype) -> torch.Tensor:
        """``weight`` in ``dtype``, the cast kept while the weight is unchanged (same storage and
        version) and frozen. Why: full fine-tuning trains a float32 copy whose tied head stays
        frozen; casting its 262k x 640 rows to bf16 at every chunk and backward was half the
        head's time there (`benchmarks/lm_head_share.py`)."""
        if weight.dtype == dtype or weight.requires_grad:
            return weight.to(dtype)
        key = (weight.data_ptr(), weight._version, tuple(weight.shape), dtype, weight.device)
        if self.cast is None or self.cast[0] != key:
            self.cast = (key, weight.to(dtype))
        return self.cast[1]

    def get(self, name: str, rows: int, cols: int, dtype, device) -> torch.Tensor:
        key = (name, cols, dtype, device)
        buf = self.buffers.get(key)
        if buf is None or buf.shape[0] < rows:
            buf = self.buffers[key] = torch.empty(max(rows, CHUNK_TOKENS), cols, dtype=dtype, device=device)
        return buf[:rows]


_workspace: _Workspace | None = None  # set inside `cpu_fast_lm_head`
_log_probs_only = False  # set inside `log_probs_only`


@contextlib.contextmanager
def log_probs_only():
    """Inside, `TokenChunkedLogProbs` computes log-probabilities and returns None for the optional outputs."""
    global _log_probs_only
    before, _log_probs_only = _log_probs_only, True
    try:
        yield
    finally:
        _log_probs_only = before


def _saved_probs(rows, cols, dtype, device) -> tuple[torch.Tensor, bool]:
    """(tensor for the softmax kept until backward, whether it is the workspace's)."""
    if _workspace is None or _workspace.saved_in_use:
        return torch.empty(rows, cols, dtype=dtype, device=device), False
    _workspace.saved_in_use = True
    return _workspace.get("saved", rows, cols, dtype, device), True


def _weight_in(weight: torch.Tensor, dtype) -> torch.Tensor:
    return weight.to(dtype) if _workspace is None else _workspace.weight_in(weight, dtype)


def _buffer(name, rows, cols, dtype, device):
    if _workspace is None:
        return torch.empty(rows, cols, dtype=dtype, device=device)
    return _workspace.get(name, rows, cols, dtype, device)


def _transform(z: torch.Tensor, logit_scale: float, softcap: float | None, inv_t: float) -> torch.Tensor:
    """The logit transform of TRL's kernel (scale, optional softcap, temperature), in place on fp32 ``z``."""
    if logit_scale != 1.0:
        z.mul_(logit_scale)
    if softcap is not None:
        z.div_(softcap).tanh_().mul_(softcap)
    if inv_t != 1.0:
        z.mul_(inv_t)
    return z


def _project(hidden, weight, bias, compute_dtype) -> torch.Tensor:
    """Raw logits ``[n, V]`` of one token chunk in the compute dtype (a bf16 GEMM under bf16 autocast)."""
    out = _buffer("mm", hidden.shape[0], weight.shape[0], compute_dtype, hidden.device)
    torch.mm(hidden.to(compute_dtype), _weight_in(weight, compute_dtype).t(), out=out)
    if bias is not None:
        out.add_(bias.to(compute_dtype))
    return out


def _log_softmax(raw, transform) -> tuple[torch.Tensor, torch.Tensor]:
    """(fp32 log-probabilities, logits after the transform) of one chunk; the logits may be ``raw`` itself."""
    z = _buffer("z", raw.shape[0], raw.shape[1], torch.float32, raw.device)
    _transform(z.copy_(raw), *transform)
    log_p = _buffer("log_p", raw.shape[0], raw.shape[1], torch.float32, raw.device)
    torch.log_softmax(z, -1, out=log_p)
    return log_p, z


class TokenChunkedLogProbs(torch.autograd.Function):
    """Drop-in for ``trl.kernels.ChunkedLogProbFunction`` (same arguments and outputs)."""

    #: Whether the current call records a graph; inside ``forward`` grad mode is always off,
    #: and ``needs_input_grad`` says True for a ``no_grad`` reference pass over trainable inputs.
    _recording = False

    @classmethod
    def apply(cls, *args):
        TokenChunkedLogProbs._recording = torch.is_grad_enabled()
        return super().apply(*args)

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, temperature, chunk_size, final_logit_softcapping=None,
                logit_scale=1.0, outputs=_OPTIONAL):
        del chunk_size  # TRL's vocabulary tile width; chunks here are over tokens
        ctx.set_materialize_grads(False)
        device = hidden.device
        compute_dtype = (torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type)
                         else hidden.dtype)
        n_tokens, vocab = hidden.shape[0], weight.shape[0]
        transform = (logit_scale, final_logit_softcapping, 1.0 / temperature)
        want = {name: name in outputs and not _log_probs_only for name in _OPTIONAL}
        f32 = dict(device=device, dtype=torch.float32)
        logprobs = torch.empty(n_tokens, **f32)
        target_logit = torch.empty(n_tokens, **f32)
        entropy = torch.empty(n_tokens, **f32) if want["entropy"] else None
        log_sum_sq = torch.empty(n_tokens, **f32) if want["log_sum_sq_probs"] else None
        mean_logits = torch.empty(n_tokens, **f32) if want["mean_logits"] else None
        is_top1 = torch.empty(n_tokens, device=device, dtype=torch.bool) if want["is_top1"] else None
        # Keep the softmax for backward when a gradient will be asked for and the transform has a
        # constant derivative (no softcap).
        save = (TokenChunkedLogProbs._recording and any(ctx.needs_input_grad[:3])
                and final_logit_softcapping is None
                and n_tokens * vocab * compute_dtype.itemsize <= SAVE_BUDGET_BYTES)
        probs, ctx.probs_from_workspace = _saved_probs(n_tokens, vocab, compute_dtype, device) if save else (None, False)
        with torch.autocast(device.type, enabled=False):  # dtypes are chosen here; autocast would copy to bf16
            _forward_chunks(hidden, weight, bias, targets, compute_dtype, transform, logprobs, target_logit,
                            entropy, log_sum_sq, mean_logits, is_top1, probs)
        log_z = target_logit - logprobs
        ctx.save_for_backward(hidden, weight, bias, targets, log_z, logprobs,
                              entropy if entropy is not None else log_z, probs)
        ctx.compute_dtype = compute_dtype
        ctx.transform = transform
        ctx.mark_non_differentiable(*(x for x in (log_sum_sq, mean_logits, is_top1) if x is not None))
        return logprobs, entropy, log_sum_sq, mean_logits, is_top1

    @staticmethod
    def backward(ctx, grad_logprobs, grad_entropy, *_):
        hidden, weight, bias, targets, log_z, logprobs, entropy, probs = ctx.saved_tensors
        logit_scale, softcap, inv_t = ctx.transform
        need_hidden, need_weight, need_bias = ctx.needs_input_grad[:3]
        compute_dtype = ctx.compute_dtype
        n_tokens, vocab = hidden.shape[0], weight.shape[0]
        grad_hidden = torch.empty_like(hidden) if need_hidden else None
        grad_weight = torch.zeros(weight.shape, device=weight.device, dtype=torch.float32) if need_weight else None
        grad_bias = torch.zeros(vocab, device=hidden.device, dtype=torch.float32) if need_bias else None
        w = _weight_in(weight, compute_dtype)
        for start in range(0, n_tokens, CHUNK_TOKENS):
            end = min(start + CHUNK_TOKENS, n_tokens)
            t = targets[start:end].unsqueeze(-1)
            with torch.autocast(hidden.device.type, enabled=False):
                if probs is not None and grad_entropy is None:
                    grad = _grad_from_saved(probs[start:end], grad_logprobs, logprobs, t, start, end,
                                            inv_t * logit_scale)
                else:
                    grad = _grad_recomputed(hidden[start:end], weight, bias, t, log_z[start:end],
                                            entropy[start:end], grad_logprobs, grad_entropy, start, end, ctx)
                if grad_hidden is not None:
                    grad_hidden[start:end] = grad @ w
                if grad_weight is not None:
                    grad_weight.add_(grad.t() @ hidden[start:end].to(compute_dtype))
                if grad_bias is not None:
                    grad_bias.add_(grad.sum(0, dtype=torch.float32))
        if ctx.probs_from_workspace and _workspace is not None:
            _workspace.saved_in_use = False
        return (
            grad_hidden,
            grad_weight.to(weight.dtype) if grad_weight is not None else None,
            grad_bias.to(bias.dtype) if grad_bias is not None else None,
            None, None, None, None, None, None,
        )


def _forward_chunks(hidden, weight, bias, targets, compute_dtype, transform, logprobs, target_logit,
                    entropy, log_sum_sq, mean_logits, is_top1, probs) -> None:
    """Fill the per-token outputs (and the saved softmax ``probs``) chunk by chunk."""
    n_tokens = hidden.shape[0]
    for start in range(0, n_tokens, CHUNK_TOKENS):
        end = min(start + CHUNK_TOKENS, n_tokens)
        t = targets[start:end].unsqueeze(-1)
        log_p, z = _log_softmax(_project(hidden[start:end], weight, bias, compute_dtype), transform)
        logprobs[start:end] = log_p.gather(-1, t).squeeze(-1)
        target_logit[start:end] = z.gather(-1, t).squeeze(-1)
        if mean_logits is not None:
            mean_logits[start:end] = z.mean(-1)
        if is_top1 is not None:
            is_top1[start:end] = log_p.max(-1).indices == t.squeeze(-1)  # first maximum, as TRL's kernel
        if log_sum_sq is not None:
            log_sum_sq[start:end] = torch.logsumexp(2 * log_p, dim=-1)
        if entropy is not None:
            p = torch.exp(log_p, out=z)  # z is not needed any more
            entropy[start:end] = -torch.bmm(p.unsqueeze(1), log_p.unsqueeze(2)).view(-1)  # -sum p log p
            if probs is not None:
                probs[start:end] = p
        elif probs is not None:
            torch.exp(log_p, out=probs[start:end])


def _grad_from_saved(probs, grad_logprobs, logprobs, t, start, end, factor) -> torch.Tensor:
    """d loss / d raw logits = g (onehot - p) x factor, from the saved softmax (compute dtype).

    The target column is written from fp32 ``g (1 - p_t)``: ``1 - p_t`` in bf16 would cancel
    when the model is confident.
    """
    grad = _buffer("grad", end - start, probs.shape[1], probs.dtype, probs.device)
    if grad_logprobs is None:
        return grad.zero_()
    g = grad_logprobs[start:end].float().unsqueeze(-1) * factor
    torch.mul(probs, (-g).to(probs.dtype), out=grad)
    p_t = logprobs[start:end].unsqueeze(-1).exp()
    rows = torch.arange(end - start, device=grad.device)
    grad[rows, t.squeeze(-1)] = (g * (1 - p_t)).squeeze(-1).to(grad.dtype)  # index_put: touches n entries
    return grad


def _grad_recomputed(hidden, weight, bias, t, log_z, entropy, grad_logprobs, grad_entropy, start, end, ctx):
    """The same gradient in fp32 from recomputed logits: softcapped heads, entropy gradients, big batches."""
    logit_scale, softcap, inv_t = ctx.transform
    raw = _project(hidden, weight, bias, ctx.compute_dtype).float()
    y = raw * logit_scale  # kept for the softcap's derivative
    log_p = _transform(raw, logit_scale, softcap, inv_t).sub_(log_z.unsqueeze(-1))
    p = log_p.exp()
    grad = torch.zeros_like(p)
    if grad_logprobs is not None:  # d log p_target / dz = onehot - p
        g = grad_logprobs[start:end].float().unsqueeze(-1)
        grad.sub_(p * g).scatter_add_(-1, t, g)
    if grad_entropy is not None:  # d entropy / dz = -p (log p + H)
        grad.sub_(p * grad_entropy[start:end].float().unsqueeze(-1) * (log_p + entropy.unsqueeze(-1)))
    if softcap is not None:
        grad.mul_(1 - torch.tanh(y / softcap).square_())
    return grad.mul_(inv_t * logit_scale).to(ctx.compute_dtype)


def _dispatching(original):
    """``original`` for non-CPU tensors, `TokenChunkedLogProbs` for CPU ones."""

    class Dispatch:
        @staticmethod
        def apply(hidden, *args):
            fn = TokenChunkedLogProbs if hidden.device.type == "cpu" else original
            return fn.apply(hidden, *args)

    return Dispatch


@contextlib.contextmanager
def cpu_fast_lm_head(enabled: bool = True):
    """Inside the block, TRL's fused LM head uses `TokenChunkedLogProbs` on CPU tensors.

    A no-op when disabled or when this TRL has no fused LM head (``trl.trainer.utils._ChunkedLogProbFunction``).
    """
    try:
        import trl.trainer.utils as trl_utils
    except ImportError:  # pragma: no cover
        yield
        return
    original = getattr(trl_utils, "_ChunkedLogProbFunction", None)
    if not enabled or original is None:
        yield
        return
    global _workspace
    trl_utils._ChunkedLogProbFunction = _dispatching(original)
    _workspace = _Workspace()
    try:
        with _reference_pass_log_probs_only():
            yield
    finally:
        trl_utils._ChunkedLogProbFunction = original
        _workspace = None


@contextlib.contextmanager
def _reference_pass_log_probs_only():
    """DPO's reference pass reads ``.log_probs`` only: skip the metric outputs there."""
    try:
        from trl import DPOTrainer
    except ImportError:  # pragma: no cover
        yield
        return
    original = DPOTrainer.__dict__.get("compute_ref_log_probs")
    if original is None:  # pragma: no cover - a TRL without this hook
        yield
        return

    def compute_ref_log_probs(self, *args, **kwargs):
        with log_probs_only():
            return original(self, *args, **kwargs)

    DPOTrainer.compute_ref_log_probs = compute_ref_log_probs
    try:
        yield
    finally:
        DPOTrainer.compute_ref_log_probs = original


__all__ = ["CHUNK_TOKENS", "SAVE_BUDGET_BYTES", "TokenChunkedLogProbs", "cpu_fast_lm_head", "log_probs_only"]
