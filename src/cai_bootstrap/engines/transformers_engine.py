"""The default backend: Hugging Face transformers on CPU or one GPU.

Batched, left-padded generation; prompts are sorted by length so a batch wastes
little padding; decoding runs in `decoding.decode_batch` (one prefill per prompt
for its n samples, top-k sampling, finished rows leave the batch); logits are
computed only where they are used (generation keeps the last position; `choose`
keeps only the option tokens).
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from cai_bootstrap.engines.base import DEFAULT_BATCH_SIZE, Engine, SamplingParams
from cai_bootstrap.engines.decoding import decode_batch
from cai_bootstrap.engines.prefill import MIN_SHARED_TOKENS
from cai_bootstrap.engines.start_ban import start_ban
from cai_bootstrap.models.loading import LoadedModel, load_model
from cai_bootstrap.prompt_format import STOP_SEQUENCES, clean_response


log = logging.getLogger(__name__)


def batch_seed(seed: int, batch_index: int) -> int:
    digest = hashlib.sha256(f"{seed}:{batch_index}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def make_progress(disable: bool = False) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        disable=disable,
        transient=False,
    )


class TransformersEngine(Engine):
    name = "transformers"
    supports_banned_starts = True

    def __init__(self, loaded: LoadedModel, batch_size: int = DEFAULT_BATCH_SIZE, max_prompt_tokens: int = 1536):
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.batch_size = batch_size
        self.max_prompt_tokens = max_prompt_tokens
        self.tokenizer.padding_side = "left"
        self.generated_tokens = 0
        #: `prefill`: a batch's common prompt prefix of at least this many tokens is prefilled once (None: never).
        self.min_shared_prefix: int | None = MIN_SHARED_TOKENS

    @classmethod
    def from_ref(cls, ref: str, dtype: str | None = None, batch_size: int = DEFAULT_BATCH_SIZE) -> TransformersEngine:
        return cls(load_model(ref, dtype=dtype), batch_size=batch_size)

    def prompt_ids(self, prompt: str) -> list[int]:
        """The token ids the model sees for ``prompt``: at most ``max_prompt_tokens``, cut from
        the *left* (the start of a few-shot prompt goes; the leading special token and the end,
        with the ``### Response:`` header the answer follows, stay)."""
        ids = self.tokenizer(prompt).input_ids
        limit = self.max_prompt_tokens
        if len(ids) <= limit:
            return ids
        bos = self.tokenizer.bos_token_id
        head = ids[:1] if bos is not None and ids[0] == bos else []
        return head + ids[len(ids) - (limit - len(head)):]

    def _encode(self, prompts: list[str]) -> dict:
        ids = [self.prompt_ids(p) for p in prompts]
        width = max(len(row) for row in ids)
        pad = self.tokenizer.pad_token_id
        device = self.model.device
        input_ids = torch.tensor([[pad] * (width - len(row)) + row for row in ids], device=device)
        mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in ids], device=device)
        return {"input_ids": input_ids, "attention_mask": mask}

    def _warn_long(self, lengths: list[int]) -> None:
        long = [n for n in lengths if n > self.max_prompt_tokens]
        if long:
            log.warning(
                "%d of %d prompts exceed %d tokens (longest %d): cut from the left, so the start of the "
                "prompt (few-shot examples) is lost and its end (the request and '### Response:') kept",
                len(long), len(lengths), self.max_prompt_tokens, max(long),
            )

    @torch.inference_mode()
    def generate(
        self, prompts: list[str], params: SamplingParams, *, progress: bool = True, desc: str = "generate",
        cancel: threading.Event | None = None,
    ) -> list[list[str]]:
        """``cancel``: set it (from another thread) to abandon the call with `GenerationCancelled`
        before the next decoding step."""
        if not prompts:
            return []
        stops = list(dict.fromkeys(list(STOP_SEQUENCES) + list(params.stop)))
        # Longest first: the slowest batch runs while the ETA is still honest.
        lengths = [len(self.tokenizer(p).input_ids) for p in prompts]
        self._warn_long(lengths)
        order = sorted(range(len(prompts)), key=lambda i: -lengths[i])
        # n samples per prompt share the batch: fewer prompts per batch when n > 1.
        per_batch = max(1, self.batch_size // params.n)
        results: list[list[str]] = [[] for _ in prompts]
        stopped = self._stop_check(stops) if params.min_new_tokens < params.max_new_tokens else None
        n_batches = math.ceil(len(order) / per_batch)
        ban = start_ban(self.tokenizer, tuple(params.banned_starts)) if params.banned_starts else None
        with make_progress(disable=not progress) as bar:
            task = bar.add_task(desc, total=len(prompts), rate="")
            done_tokens, t0 = 0, time.time()
            for b in range(n_batches):
                idx = order[b * per_batch : (b + 1) * per_batch]
                enc = self._encode([prompts[i] for i in idx])
                new = decode_batch(
                    self.model, enc["input_ids"], enc["attention_mask"], params,
                    eos_ids=[self.tokenizer.eos_token_id], stopped=stopped, seed=batch_seed(params.seed, b),
                    cancelled=cancel.is_set if cancel is not None else None, min_shared_prefix=self.min_shared_prefix,
                    banned_next=ban.banned if ban else None, ban_steps=ban.steps if ban else 0,
                )
                texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
                done_tokens += sum(len(t) for t in new)
                for j, i in enumerate(idx):
                    results[i] = [clean_response(t, tuple(params.stop)) for t in texts[j * params.n : (j + 1) * params.n]]
                bar.update(task, advance=len(idx), rate=f"{done_tokens / max(time.time() - t0, 1e-6):.0f} tok/s")
            self.generated_tokens += done_tokens
        return results

    def _stop_check(self, stops: list[str], window: int = 8):
        """Does a row's tail decode to text containing a stop string? (Decoding the last
        few tokens costs microseconds; transformers' ``stop_strings`` precomputes a table
        over the 262k-token vocabulary for every new stop set, tens of seconds.)"""
        decode = self.tokenizer.decode

        def stopped(tokens: list[int]) -> bool:
            tail = decode(tokens[-window:], skip_special_tokens=True)
            return any(stop in tail for stop in stops)

        return stopped

    @torch.inference_mode()
    def option_logprobs(self, prompts: list[str], options: list[list[str]]) -> list[list[float]]:
        """Sum log-probability of each option continuation, computing logits only for option tokens."""
        pairs = [(pi, oi) for pi, opts in enumerate(options) for oi in range(len(opts))]
        scores: list[list[float]] = [[0.0] * len(opts) for opts in options]
        tok = self.tokenizer
        for start in range(0, len(pairs), self.batch_size):
            chunk = pairs[start : start + self.batch_size]
            seqs, n_opt = [], []
            for pi, oi in chunk:
                p_ids = tok(prompts[pi]).input_ids
                o_ids = tok(options[pi][oi], add_special_tokens=False).input_ids
                seqs.append(p_ids + o_ids)
                n_opt.append(len(o_ids))
            width = max(len(s) for s in seqs)
            pad = tok.pad_token_id
            ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs], device=self.model.device)
            mask = (torch.arange(width)[None, :] >= torch.tensor([width - len(s) for s in seqs])[:, None]).long()
            keep = max(n_opt) + 1
            logits = self.model(input_ids=ids, attention_mask=mask.to(ids.device), logits_to_keep=keep).logits.float()
            logp = torch.log_softmax(logits, dim=-1)
            for row, ((pi, oi), k) in enumerate(zip(chunk, n_opt)):
                # position t predicts token t+1; the last `keep` logits cover positions width-keep .. width-1
                target = ids[row, width - k :]
                pred = logp[row, keep - k - 1 : keep - 1]
                scores[pi][oi] = pred.gather(-1, target[:, None]).sum().item()
        return scores

    def choose(self, prompts: list[str], options: list[list[str]]) -> list[int]:
        scores = self.option_logprobs(prompts, options)
        return [max(range(len(s)), key=s.__getitem__) for s in scores]
