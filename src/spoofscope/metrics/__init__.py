"""Official ASVspoof metrics (numpy only: nothing here imports torch)."""

from ._det import compute_eer, det_curve
from .asvspoof5 import ADCF_PAPER_COST, ADCFCost, DCFCost, act_dcf, cllr, min_a_dcf, min_dcf
from .localisation import range_eer, segment_eer, utterance_eer
from .report import EvaluationReport, evaluate_scores, per_attack_eer
from .tdcf import (
    OFFICIAL_COST_MODEL,
    AsvErrorRates,
    CostModel,
    TDCFResult,
    asv_error_rates,
    tdcf_2019,
    tdcf_2021,
)

__all__ = [
    "ADCF_PAPER_COST",
    "ADCFCost",
    "AsvErrorRates",
    "CostModel",
    "DCFCost",
    "EvaluationReport",
    "OFFICIAL_COST_MODEL",
    "TDCFResult",
    "act_dcf",
    "asv_error_rates",
    "cllr",
    "compute_eer",
    "det_curve",
    "evaluate_scores",
    "min_a_dcf",
    "min_dcf",
    "per_attack_eer",
    "range_eer",
    "segment_eer",
    "utterance_eer",
    "tdcf_2019",
    "tdcf_2021",
]
