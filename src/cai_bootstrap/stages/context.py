"""What a stage builder gets: its spec, role models, a resumable record sink.

Builder contract (one module per stage kind in ``cai_bootstrap.stages``)::

    def build(ctx: StageContext) -> None:
        '''Write this stage's training records to ctx.sink.'''

A builder walks its work in deterministic chunks (`ctx.chunks`): a chunk whose
records are all written is skipped on resume; an unfinished chunk is redone with
the same seed, so it produces the same records, and only missing keys are added.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from rich.console import Console

from cai_bootstrap.config import RunSettings, StageSpec
from cai_bootstrap.engines.base import Engine, SamplingParams
from cai_bootstrap.jsonl import JsonlAppender, iter_jsonl

T = TypeVar("T")
log = logging.getLogger(__name__)


def derive_seed(*parts: object) -> int:
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "little")


class RecordSink:
    """Append-only ``data.jsonl`` with the set of keys already written.

    Record schema (one training candidate per line)::

        key        unique within the stage
        family     task family name
        attempt    retry attempt that produced it (0 = first)
        kept       passed every filter -> eligible for training
        drop_reason  why not kept (filter name), else null
        prompt     the instruction the trained model sees
        chosen     the response trained towards
        rejected   the dispreferred response (DPO), or null
        check      verifier / principle used
        verdicts   {field: Verdict dict}
        provenance {field: {"by": model name ("seed", "base", stage name), "input": prompt it was given, ...}}
        reference  what the verifier compared against
    """

    def __init__(self, path: Path):
        self.path = path
        self.keys: set[str] = set()
        self.counts: dict[str, int] = {"written": 0, "kept": 0}
        for rec in iter_jsonl(path):
            self._count(rec)
        self._writer = JsonlAppender(path)

    def _count(self, rec: dict) -> None:
        self.keys.add(rec["key"])
        self.counts["written"] += 1
        self.counts["kept"] += int(bool(rec.get("kept")))

    def has(self, key: str) -> bool:
        return key in self.keys

    def write(self, record: dict) -> bool:
        """Append unless the key exists. Returns whether it was written."""
        if record["key"] in self.keys:
            return False
        for required in ("key", "family", "prompt", "kept", "provenance"):
            if required not in record:
                raise ValueError(f"record {record.get('key')!r} lacks field {required!r}")
        self._writer.append(record)
        self._count(record)
        return True

    def records(self) -> list[dict]:
        return list(iter_jsonl(self.path))

    def kept_records(self) -> list[dict]:
        return [r for r in iter_jsonl(self.path) if r.get("kept")]

    def close(self) -> None:
        self._writer.close()


@dataclass
class StageContext:
    spec: StageSpec
    settings: RunSettings
    stage_dir: Path
    sink: RecordSink
    #: role name -> engine (loaded lazily by the runner's model pool)
    engine_for: Callable[[str], Engine]
    #: role name -> provenance name ("base", or the stage whose model plays it)
    role_name: Callable[[str], str]
    attempt: int = 0
    console: Console = field(default_factory=Console)
    chunk_size: int = 16

    @property
    def run_dir(self) -> Path:
        return self.stage_dir.parent

    @property
    def seed(self) -> int:
        return derive_seed(self.settings.seed, self.spec.name, self.attempt)

    @property
    def target_examples(self) -> int:
        """Kept records wanted, scaled up on retries."""
        return int(round(self.spec.examples * (self.spec.retry.data_multiplier**self.attempt)))

    def for_attempt(self, attempt: int) -> StageContext:
        """The same context as attempt ``attempt`` sees it (budgets and seeds depend on the attempt)."""
        return dataclasses.replace(self, attempt=attempt)

    def engine(self, role: str) -> Engine:
        return self.engine_for(role)

    def sampling(self, **overrides: object) -> SamplingParams:
        s = self.spec.sampling
        params = dict(
            max_new_tokens=s.max_new_tokens, temperature=s.temperature, top_p=s.top_p, n=s.n,
            repetition_penalty=s.repetition_penalty, seed=self.seed,
        )
        params.update(overrides)
        return SamplingParams(**params)

    def chunks(
        self, items: Sequence[T], keys: Callable[[T], list[str]], size: int | None = None, until_enough: bool = True,
    ) -> Iterator[tuple[int, list[T], int]]:
        """Yield ``(index, chunk, seed)`` for chunks with at least one unwritten key,
        until the stage has `enough` kept records.

        Chunking and seeds depend only on the item order and the stage seed, so a
        redone chunk reproduces the records it had produced before a crash. The
        `enough` test is made only before an *untouched* chunk: a chunk that a killed
        process had begun is always finished, as the uninterrupted run finished it
        (otherwise a resume could stop early with fewer records than the reference).
        """
        size = size or self.chunk_size
        for idx, start in enumerate(range(0, len(items), size)):
            chunk = list(items[start : start + size])
            written = [self.sink.has(k) for item in chunk for k in keys(item)]
            if all(written):
                continue
            if until_enough and not any(written) and self.enough():
                return
            yield idx, chunk, derive_seed(self.seed, "chunk", idx)

    def enough(self) -> bool:
        return self.sink.counts["kept"] >= self.target_examples
