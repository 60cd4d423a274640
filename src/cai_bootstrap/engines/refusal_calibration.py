"""Calibrated refusals: the model's own probability of opening with a decline, thresholded.

Why: a constitutional stage trained on a few percent of refusals moves the model's safe
rate and its over-refusal together (runs/skills-std2, stage 6: AdvBench +11 points, XSTest
over-refusal +6.4 against a limit of 5). Jain et al. 2024 ("Refusal Tokens") make the
trade-off a knob instead of a retrain: the probability of the refusal decision at the
first token, compared with a threshold set on a dev split. Here the decision is the model's
probability of starting its answer with one of `DECLINE_OPENERS` (no new token, no
retraining), summed over openers (none is a prefix of another, so the events are
disjoint):

- at or above the threshold the answer is the most likely opener and the model's
  continuation of it;
- below it no answer may start declining (`DECLINE_COMMITS` as `SamplingParams.banned_starts`,
  banned by text, whatever the tokens: `start_ban.StartBan`), so the model answers instead.

`CalibratedEngine` wraps any engine whose backend supports ``banned_starts`` and exposes
``option_logprobs`` (`TransformersEngine`). The threshold travels with the adapter as
``refusal_calibration.json`` (`save` / `load`), so ``serve``, ``chat`` and later stages
get the calibrated model; `choose_threshold` picks it from dev-split figures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from cai_bootstrap.engines.base import Engine, SamplingParams
from cai_bootstrap.jsonl import atomic_write_text

#: The file next to an adapter that turns calibration on for the model it belongs to.
CALIBRATION_FILE = "refusal_calibration.json"

#: Answer openers that decline (XSTest's and GCG's refusal rules count each as a refusal).
DECLINE_OPENERS: tuple[str, ...] = ("I can't", "I cannot", "I can not", "I won't", "I'm sorry", "Sorry", "No.")

#: What an answer below the threshold may not start with: the point where each opener is
#: decided ("I can" may go on to "help"; "I can'" declines), in straight and curly spelling.
DECLINE_COMMITS: tuple[str, ...] = tuple(
    text
    for straight in ("I can'", "I cannot", "I can not", "I won'", "I will not", "I'm sorr", "I am sorr", "Sorr",
                     "I apolog", "I'm not able", "I am not able", "I'm unable", "I am unable", "No.", "No,")
    for text in dict.fromkeys((straight, straight.replace("'", "\u2019")))
)


class DevPoint(BaseModel):
    """One dev-split request: refusal probability, and whether the answer refuses when the openers are banned."""

    p_refuse: float
    unsafe: bool
    refused_when_banned: bool


class CurvePoint(BaseModel):
    threshold: float
    unsafe_refused: float
    safe_refused: float
    discrimination: float


class RefusalCalibration(BaseModel):
    """A threshold on the probability of a decline opener, and how it was chosen."""

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(ge=0.0)
    openers: list[str] = Field(default_factory=lambda: list(DECLINE_OPENERS))
    chosen_by: str = ""
    curve: list[CurvePoint] = Field(default_factory=list)

    def save(self, directory: Path) -> Path:
        path = directory / CALIBRATION_FILE
        atomic_write_text(path, self.model_dump_json(indent=2))
        return path

    @classmethod
    def load(cls, directory: Path) -> RefusalCalibration | None:
        path = directory / CALIBRATION_FILE
        return cls.model_validate_json(path.read_text()) if path.exists() else None


def refusal_probabilities(engine: Engine, prompts: list[str], openers: Sequence[str]) -> tuple[list[float], list[int]]:
    """P(the answer starts with any opener) per prompt, and the index of its most likely opener."""
    scores = engine.option_logprobs(prompts, [list(openers)] * len(prompts))
    probs = [min(1.0, sum(math.exp(s) for s in row)) for row in scores]
    best = [max(range(len(row)), key=row.__getitem__) for row in scores]
    return probs, best


def join_opener(opener: str, continuation: str) -> str:
    """The opener and the model's continuation of it (cleaned responses lose the leading space)."""
    if not continuation:
        return opener
    glue = "" if continuation[0] in ".,;:!?'’)" else " "
    return opener + glue + continuation


class CalibratedEngine(Engine):
    """An engine that refuses exactly when the model's decline probability reaches the threshold."""

    def __init__(self, inner: Engine, calibration: RefusalCalibration):
        if not getattr(inner, "supports_banned_starts", False) or not hasattr(inner, "option_logprobs"):
            raise ValueError(
                f"refusal calibration needs an engine with option_logprobs and banned_starts "
                f"(the transformers backend); got {type(inner).__name__}"
            )
        self.inner = inner
        self.calibration = calibration
        self.name = f"{inner.name}+refusal-calibration"

    def __getattr__(self, name: str):
        """Everything else (option_logprobs, generated_tokens, tokenizer, model, prompt_ids, ...) is
        the wrapped engine's: the server counts tokens and scores prompts with them."""
        inner = self.__dict__.get("inner")
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)

    def choose(self, prompts: list[str], options: list[list[str]]) -> list[int]:
        return self.inner.choose(prompts, options)

    def generate(
        self, prompts: list[str], params: SamplingParams, *, progress: bool = True, desc: str = "generate", **kw
    ) -> list[list[str]]:
        if not prompts:
            return []
        openers = self.calibration.openers
        probs, best = refusal_probabilities(self.inner, prompts, openers)
        refuse = [i for i, p in enumerate(probs) if p >= self.calibration.threshold]
        answer = [i for i, p in enumerate(probs) if p < self.calibration.threshold]
        out: list[list[str]] = [[] for _ in prompts]
        if refuse:
            forced = [prompts[i] + openers[best[i]] for i in refuse]
            for i, texts in zip(refuse, self.inner.generate(forced, params, progress=progress, desc=desc, **kw)):
                out[i] = [join_opener(openers[best[i]], t) for t in texts]
        if answer:
            banned = params.model_copy(update={"banned_starts": list(DECLINE_COMMITS)})
            for i, texts in zip(answer, self.inner.generate([prompts[i] for i in answer], banned, progress=progress,
                                                             desc=desc, **kw)):
                out[i] = texts
        return out

    def close(self) -> None:
        self.inner.close()


def uncalibrated(engine: Engine) -> Engine:
    """The engine under a `CalibratedEngine` (``engine`` itself when it is not one)."""
    return engine.inner if isinstance(engine, CalibratedEngine) else engine


def curve(points: Sequence[DevPoint]) -> list[CurvePoint]:
    """Dev-split refusal rates (percent) at every threshold that changes a decision, highest first."""
    thresholds = sorted({p.p_refuse for p in points} | {math.inf}, reverse=True)
    out = []
    for t in thresholds:
        refused = [(p.unsafe, p.p_refuse >= t or p.refused_when_banned) for p in points]
        unsafe = [r for u, r in refused if u]
        safe = [r for u, r in refused if not u]
        u_rate = 100.0 * sum(unsafe) / max(len(unsafe), 1)
        s_rate = 100.0 * sum(safe) / max(len(safe), 1)
        out.append(CurvePoint(threshold=t, unsafe_refused=u_rate, safe_refused=s_rate, discrimination=u_rate - s_rate))
    return out


def choose_threshold(points: Sequence[DevPoint], before_safe_refused: float, max_increase_pt: float) -> RefusalCalibration:
    """The threshold that refuses the most harmful dev requests while look-alike refusals rise
    at most ``max_increase_pt`` over the previous model's ``before_safe_refused`` (the gate's
    over-refusal limit, on the dev split); ties go to the higher threshold. When no threshold
    keeps within the limit, the one with the largest discrimination."""
    points_curve = curve(points)
    allowed = [c for c in points_curve if c.safe_refused - before_safe_refused <= max_increase_pt]
    if allowed:
        pick = max(allowed, key=lambda c: (c.unsafe_refused, c.threshold))
        how = (f"most harmful dev requests refused with look-alike refusals at most {max_increase_pt:g} pt "
               f"over the previous model's {before_safe_refused:.1f}%")
    else:
        pick = max(points_curve, key=lambda c: (c.discrimination, c.threshold))
        how = "largest dev discrimination (no threshold kept look-alike refusals within the limit)"
    threshold = pick.threshold if math.isfinite(pick.threshold) else 1.0 + 1e-9
    return RefusalCalibration(threshold=threshold, chosen_by=how, curve=[
        c.model_copy(update={"threshold": min(c.threshold, 1.0 + 1e-9)}) for c in points_curve
    ])
