"""IFEval: verifiable instruction-following checks and strict/loose scoring."""

from cai_bootstrap.evaluation.ifeval.checkers import (
    CHECKERS,
    UnsupportedInstruction,
    check_instruction,
    language_detection_available,
    supported_instructions,
)
from cai_bootstrap.evaluation.ifeval.scoring import IFEvalRow, IFEvalScores, aggregate, loose_variants, score_response

__all__ = [
    "CHECKERS",
    "IFEvalRow",
    "IFEvalScores",
    "UnsupportedInstruction",
    "aggregate",
    "check_instruction",
    "language_detection_available",
    "loose_variants",
    "score_response",
    "supported_instructions",
]
