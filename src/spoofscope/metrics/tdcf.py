"""Tandem detection cost function (t-DCF): the ASVspoof 2019 form and the revised 2021 form.

Both follow the organisers' code exactly (the 2019 ``compute_tDCF`` of the LA baseline and the
2021 eval-package ``compute_tDCF``): the ASV operating point is the ASV EER threshold, the CM
curve is the DET of :func:`det_curve`, and the minimum of the normalised curve is reported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ._det import _as_scores, compute_eer, det_curve


@dataclass(frozen=True)
class CostModel:
    """Priors and costs of the ASVspoof t-DCF (the official values are the defaults)."""

    Pspoof: float = 0.05
    Ptar: float = 0.95 * 0.99
    Pnon: float = 0.95 * 0.01
    Cmiss_asv: float = 1.0
    Cfa_asv: float = 10.0
    Cmiss_cm: float = 1.0
    Cfa_cm: float = 10.0
    # 2021 revised cost names (Cmiss = Cmiss_asv, Cfa = Cfa_asv, Cfa_spoof: spoof accepted by ASV)
    Cmiss: float = 1.0
    Cfa: float = 10.0
    Cfa_spoof: float = 10.0

    def as_dict(self) -> dict:
        return asdict(self)


OFFICIAL_COST_MODEL = CostModel()


@dataclass(frozen=True)
class AsvErrorRates:
    """ASV error rates at the ASV EER threshold (``>=`` accepts, ``<`` rejects)."""

    threshold: float
    eer: float
    Pfa_asv: float
    Pmiss_asv: float
    Pmiss_spoof_asv: float

    @property
    def Pfa_spoof_asv(self) -> float:
        return 1.0 - self.Pmiss_spoof_asv


def asv_error_rates(tar_asv, non_asv, spoof_asv) -> AsvErrorRates:
    """ASV operating point of the official t-DCF: the ASV EER threshold and the rates there."""
    tar = _as_scores(tar_asv, "ASV target scores")
    non = _as_scores(non_asv, "ASV non-target scores")
    spf = _as_scores(spoof_asv, "ASV spoof scores")
    eer, thr = compute_eer(tar, non)
    return AsvErrorRates(
        threshold=thr,
        eer=eer,
        Pfa_asv=float(np.sum(non >= thr) / non.size),
        Pmiss_asv=float(np.sum(tar < thr) / tar.size),
        Pmiss_spoof_asv=float(np.sum(spf < thr) / spf.size),
    )


@dataclass(frozen=True)
class TDCFResult:
    """A normalised t-DCF curve over the CM thresholds and its minimum."""

    min_tdcf: float
    index: int
    cm_threshold: float
    curve: np.ndarray
    cm_thresholds: np.ndarray
    C0: float
    C1: float
    C2: float


def _checked(asv: AsvErrorRates, cost: CostModel) -> None:
    for name in ("Pspoof", "Ptar", "Pnon", "Cmiss_asv", "Cfa_asv", "Cmiss_cm", "Cfa_cm"):
        if getattr(cost, name) < 0:
            raise ValueError(f"t-DCF cost model: {name} must be non-negative")
    if abs(cost.Ptar + cost.Pnon + cost.Pspoof - 1) > 1e-10:
        raise ValueError("t-DCF cost model: Ptar + Pnon + Pspoof must equal 1")


def tdcf_2019(bona_cm, spoof_cm, asv: AsvErrorRates, cost: CostModel = OFFICIAL_COST_MODEL):
    """ASVspoof 2019 (legacy) normalised t-DCF curve and its minimum.

    C1 = Ptar (Cmiss_cm - Cmiss_asv Pmiss_asv) - Pnon Cfa_asv Pfa_asv,
    C2 = Cfa_cm Pspoof (1 - Pmiss_spoof_asv),
    t-DCF(k) = (C1 Pmiss_cm(k) + C2 Pfa_cm(k)) / min(C1, C2).
    """
    _checked(asv, cost)
    C1 = cost.Ptar * (cost.Cmiss_cm - cost.Cmiss_asv * asv.Pmiss_asv) - (
        cost.Pnon * cost.Cfa_asv * asv.Pfa_asv
    )
    C2 = cost.Cfa_cm * cost.Pspoof * (1 - asv.Pmiss_spoof_asv)
    if C1 < 0 or C2 < 0:
        raise ValueError(
            "t-DCF: negative C1 or C2; the ASV error rates are worse than chance "
            f"(Pfa_asv={asv.Pfa_asv}, Pmiss_asv={asv.Pmiss_asv})"
        )
    miss, fa, thr = det_curve(bona_cm, spoof_cm)
    curve = (C1 * miss + C2 * fa) / np.minimum(C1, C2)
    i = int(np.argmin(curve))
    return TDCFResult(float(curve[i]), i, float(thr[i]), curve, thr, 0.0, float(C1), float(C2))


def tdcf_2021(bona_cm, spoof_cm, asv: AsvErrorRates, cost: CostModel = OFFICIAL_COST_MODEL):
    """ASVspoof 2021 revised normalised t-DCF curve and its minimum.

    C0 = Ptar Cmiss Pmiss_asv + Pnon Cfa Pfa_asv, C1 = Ptar Cmiss - C0,
    C2 = Pspoof Cfa_spoof Pfa_spoof_asv,
    t-DCF(k) = (C0 + C1 Pmiss_cm(k) + C2 Pfa_cm(k)) / (C0 + min(C1, C2)).
    """
    _checked(asv, cost)
    C0 = cost.Ptar * cost.Cmiss * asv.Pmiss_asv + cost.Pnon * cost.Cfa * asv.Pfa_asv
    C1 = cost.Ptar * cost.Cmiss - C0
    C2 = cost.Pspoof * cost.Cfa_spoof * asv.Pfa_spoof_asv
    miss, fa, thr = det_curve(bona_cm, spoof_cm)
    curve = (C0 + C1 * miss + C2 * fa) / (C0 + np.minimum(C1, C2))
    i = int(np.argmin(curve))
    return TDCFResult(
        float(curve[i]), i, float(thr[i]), curve, thr, float(C0), float(C1), float(C2)
    )
