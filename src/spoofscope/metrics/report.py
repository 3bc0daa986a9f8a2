"""Whole-evaluation summaries: EER, min t-DCF and per-attack EER of a labelled score set."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._det import compute_eer
from .tdcf import OFFICIAL_COST_MODEL, CostModel, asv_error_rates, tdcf_2019


def per_attack_eer(bona, spoof, spoof_attacks) -> dict[str, float]:
    """EER (fraction) of all bona fide trials against the spoofs of each attack, sorted by id."""
    spoof = np.asarray(spoof, dtype=np.float64)
    attacks = np.asarray(spoof_attacks)
    if attacks.shape != spoof.shape:
        raise ValueError(f"{attacks.size} attack ids for {spoof.size} spoof scores")
    return {
        str(a): compute_eer(bona, spoof[attacks == a])[0] for a in sorted(set(attacks.tolist()))
    }


@dataclass
class EvaluationReport:
    """What ``spoofscope evaluate`` reports; percentages are 0-100."""

    eer_percent: float
    eer_threshold: float
    n_bonafide: int
    n_spoof: int
    min_tdcf: float | None = None
    min_tdcf_threshold: float | None = None
    per_attack_eer_percent: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "eer_percent": self.eer_percent,
            "eer_threshold": self.eer_threshold,
            "min_tdcf": self.min_tdcf,
            "min_tdcf_threshold": self.min_tdcf_threshold,
            "per_attack_eer_percent": dict(self.per_attack_eer_percent),
            "n_bonafide": self.n_bonafide,
            "n_spoof": self.n_spoof,
        }

    def to_text(self) -> str:
        lines = [
            f"trials          {self.n_bonafide} bona fide, {self.n_spoof} spoof",
            f"EER             {self.eer_percent:.4f} %  (threshold {self.eer_threshold:.6g})",
            "min t-DCF       "
            + ("n/a (no ASV scores given)" if self.min_tdcf is None else f"{self.min_tdcf:.6f}"),
        ]
        if self.per_attack_eer_percent:
            lines += ["", "attack   EER %"]
            lines += [f"{a:<8} {v:7.4f}" for a, v in self.per_attack_eer_percent.items()]
        return "\n".join(lines)

    def to_markdown(self) -> str:
        rows = [
            "| metric | value |",
            "|---|---|",
            f"| bona fide / spoof trials | {self.n_bonafide} / {self.n_spoof} |",
            f"| EER % | {self.eer_percent:.4f} |",
            f"| min t-DCF | {'n/a' if self.min_tdcf is None else f'{self.min_tdcf:.6f}'} |",
        ]
        if self.per_attack_eer_percent:
            rows += ["", "| attack | EER % |", "|---|---|"]
            rows += [f"| {a} | {v:.4f} |" for a, v in self.per_attack_eer_percent.items()]
        return "\n".join(rows) + "\n"


def evaluate_scores(
    bona,
    spoof,
    spoof_attacks=None,
    asv_scores: tuple | None = None,
    cost: CostModel = OFFICIAL_COST_MODEL,
) -> EvaluationReport:
    """EER, per-attack EER and (given ``(tar, non, spoof_asv)``) the 2019 min t-DCF."""
    eer, thr = compute_eer(bona, spoof)
    rep = EvaluationReport(
        eer_percent=eer * 100,
        eer_threshold=thr,
        n_bonafide=int(np.size(bona)),
        n_spoof=int(np.size(spoof)),
    )
    if spoof_attacks is not None:
        rep.per_attack_eer_percent = {
            a: v * 100 for a, v in per_attack_eer(bona, spoof, spoof_attacks).items()
        }
    if asv_scores is not None:
        res = tdcf_2019(bona, spoof, asv_error_rates(*asv_scores), cost)
        rep.min_tdcf, rep.min_tdcf_threshold = res.min_tdcf, res.cm_threshold
    return rep
