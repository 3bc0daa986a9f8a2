"""ASVspoof 5 metrics: minDCF, actDCF and Cllr (track 1) and the a-DCF (track 2).

They follow the organisers' evaluation package (``calculate_modules.py`` and ``a_dcf.py``);
the DET conventions are those of :func:`det_curve`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._det import _as_scores, det_curve


@dataclass(frozen=True)
class DCFCost:
    """Track 1 cost model (the organisers' values are the defaults)."""

    Pspoof: float = 0.05
    Cmiss: float = 1.0
    Cfa: float = 10.0


def min_dcf(bona, spoof, cost: DCFCost = DCFCost()) -> tuple[float, float]:
    """Minimum normalised DCF over the DET points and the threshold of its first minimum."""
    miss, fa, thr = det_curve(bona, spoof)
    norm = min(cost.Cmiss * (1 - cost.Pspoof), cost.Cfa * cost.Pspoof)
    dcf = (cost.Cmiss * (1 - cost.Pspoof) * miss + cost.Cfa * cost.Pspoof * fa) / norm
    i = int(np.argmin(dcf))
    return float(dcf[i]), float(thr[i])


def act_dcf(bona_llr, spoof_llr, cost: DCFCost = DCFCost()) -> tuple[float, float]:
    """Actual normalised DCF of scores read as natural-log LLRs, at the Bayes threshold.

    Returns ``(actDCF, threshold)`` with threshold = -ln(Cmiss (1-Pspoof) / (Cfa Pspoof)).
    """
    bona = _as_scores(bona_llr, "bona fide scores")
    spoof = _as_scores(spoof_llr, "spoof scores")
    beta = cost.Cmiss * (1 - cost.Pspoof) / (cost.Cfa * cost.Pspoof)
    thr = -np.log(beta)
    p_miss = np.sum(bona < thr) / bona.size
    p_fa = np.sum(spoof >= thr) / spoof.size
    norm = min(cost.Cmiss * (1 - cost.Pspoof), cost.Cfa * cost.Pspoof)
    cost_value = (cost.Cmiss * (1 - cost.Pspoof) * p_miss + cost.Cfa * cost.Pspoof * p_fa) / norm
    return float(cost_value), float(thr)


def cllr(bona_llr, spoof_llr) -> float:
    """Log-likelihood-ratio cost in bits of scores read as natural-log LLRs.

    Uses ``logaddexp`` so that very negative scores give a finite cost where the
    organisers' ``log1p(exp(-x))`` form would overflow; the values are otherwise the same.
    """
    bona = _as_scores(bona_llr, "bona fide scores")
    spoof = _as_scores(spoof_llr, "spoof scores")
    c_bona = np.mean(np.logaddexp(0.0, -bona))
    c_spoof = np.mean(np.logaddexp(0.0, spoof))
    return float(0.5 * (c_bona + c_spoof) / np.log(2))


@dataclass(frozen=True)
class ADCFCost:
    """Track 2 a-DCF cost model; defaults are those ``calculate_metrics.py`` uses."""

    Ptrg: float = 0.9405
    Pnontrg: float = 0.0095
    Pspf: float = 0.05
    Cmiss: float = 1.0
    Cfa_asv: float = 10.0
    Cfa_cm: float = 10.0


#: The default of the a-DCF paper (and of ``a_dcf.py``'s CostModel).
ADCF_PAPER_COST = ADCFCost(Ptrg=0.9, Pnontrg=0.05, Pspf=0.05, Cmiss=1, Cfa_asv=10, Cfa_cm=20)


def min_a_dcf(target, nontarget, spoof, cost: ADCFCost = ADCFCost()) -> tuple[float, float]:
    """Minimum normalised architecture-agnostic DCF of single SASV scores, and its threshold."""
    tar = _as_scores(target, "target scores")
    non = _as_scores(nontarget, "non-target scores")
    spf = _as_scores(spoof, "spoof scores")
    scores = np.concatenate((tar, non, spf))
    cls = np.concatenate((np.zeros(tar.size), np.ones(non.size), np.full(spf.size, 2)))
    order = np.argsort(scores, kind="mergesort")
    cls = cls[order]
    p_miss = np.concatenate(([0.0], np.cumsum(cls == 0) / tar.size))
    p_fa_non = np.concatenate(([1.0], 1 - np.cumsum(cls == 1) / non.size))
    p_fa_spf = np.concatenate(([1.0], 1 - np.cumsum(cls == 2) / spf.size))
    thr = np.concatenate((scores[order[:1]] - 1e-8, scores[order]))
    a_dcf = (
        cost.Cmiss * cost.Ptrg * p_miss
        + cost.Cfa_asv * cost.Pnontrg * p_fa_non
        + cost.Cfa_cm * cost.Pspf * p_fa_spf
    )
    norm = min(cost.Cfa_asv * cost.Pnontrg + cost.Cfa_cm * cost.Pspf, cost.Cmiss * cost.Ptrg)
    a_dcf = a_dcf / norm
    i = int(np.argmin(a_dcf))
    return float(a_dcf[i]), float(thr[i])
