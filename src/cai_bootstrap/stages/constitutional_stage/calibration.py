"""Set the refusal threshold of a constitutional stage's model on the dev split (`engines.refusal_calibration`).

The dev split is the project's own held-out harmful requests and look-alikes, never trained
on and apart from the public benchmarks, so the threshold is chosen without looking at the
figures the gate scores.
"""

from __future__ import annotations

from pathlib import Path

from cai_bootstrap.engines.base import Engine, SamplingParams
from cai_bootstrap.engines.refusal_calibration import (
    DECLINE_COMMITS,
    DECLINE_OPENERS,
    DevPoint,
    RefusalCalibration,
    choose_threshold,
    refusal_probabilities,
)
from cai_bootstrap.jsonl import atomic_write_json, read_json
from cai_bootstrap.prompt_format import format_prompt
from cai_bootstrap.stages.constitutional_stage.rules import refused
from cai_bootstrap.tasks.base import Instance


def calibrate_on_dev(
    engine: Engine, dev: list[Instance], out_path: Path, *, before_safe_refused: float, max_increase_pt: float,
    max_new_tokens: int, progress: bool,
) -> RefusalCalibration:
    """The threshold for ``engine``'s model (uncalibrated) chosen on ``dev`` (`choose_threshold`);
    saved to ``out_path`` with the per-request figures, and loaded from it on a resume."""
    if out_path.exists():
        return RefusalCalibration.model_validate(read_json(out_path)["calibration"])
    prompts = [format_prompt(inst.instruction) for inst in dev]
    probs, _ = refusal_probabilities(engine, prompts, DECLINE_OPENERS)
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0, banned_starts=list(DECLINE_COMMITS))
    banned = [out for (out,) in engine.generate(prompts, params, progress=progress, desc="calibrate (openers banned)")]
    points = [
        DevPoint(p_refuse=p, unsafe=inst.family == "redteam", refused_when_banned=refused(text))
        for inst, p, text in zip(dev, probs, banned)
    ]
    calibration = choose_threshold(points, before_safe_refused, max_increase_pt)
    rows = [{"id": inst.id, "family": inst.family, **pt.model_dump(), "answer_with_openers_banned": text}
            for inst, pt, text in zip(dev, points, banned)]
    atomic_write_json(out_path, {"calibration": calibration.model_dump(), "dev": rows})
    return calibration
