"""Score calibration: a logistic map from a detector's score to a log-likelihood ratio.

``Calibration.fit(bona, spoof)`` learns ``llr = a * score + b`` on a labelled dev set, keeps
the EER threshold and a threshold for a target false-acceptance rate, and reports Cllr and
actDCF before (raw scores read as LLRs) and after. ``p_bonafide = sigmoid(llr + logit(prior))``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..metrics import act_dcf, cllr, compute_eer
from ._logreg import fit_llr_map

#: where a calibration's data came from (see :class:`Calibration`)
DOMAINS = ("deployment", "training", "unknown")


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


@dataclass
class Calibration:
    """A fitted score -> LLR map and its operating points.

    Attributes:
        a, b: llr = a * score + b (natural log, bona fide vs spoof).
        prior: the bona fide prior used to turn an LLR into ``p_bonafide``.
        eer_threshold: the score threshold at the dev EER.
        far_threshold: the score threshold at which ``target_far`` of dev spoofs are accepted.
        threshold: the decision threshold in use (default: ``eer_threshold``).
        band: ``confident`` is false when |p_bonafide - p(threshold)| < band.
        report: Cllr and actDCF before and after fitting, dev EER, counts.
        fitted_on: what labelled data the map was fitted on (a path, a protocol, counts).
        domain: ``deployment`` (fitted on the user's own kind of recordings: ``calibrate``,
            ``adapt``), ``training`` (the training recipe's dev split: another kind of data
            than what the detector meets) or ``unknown`` (a file that does not say). Only a
            ``deployment`` calibration lets a verdict claim ``confident``.
    """

    a: float
    b: float
    prior: float = 0.5
    eer_threshold: float = 0.0
    far_threshold: float = 0.0
    target_far: float = 0.01
    threshold: float = 0.0
    band: float = 0.1
    report: dict = field(default_factory=dict)
    fitted_on: str = ""
    domain: str = "unknown"

    def __post_init__(self):
        if self.domain not in DOMAINS:
            raise ConfigError(f"calibration domain must be one of {DOMAINS}, not {self.domain!r}")
        # a NaN, a string or a prior of 0 would give every verdict a wrong or invalid p_bonafide
        ranges = {  # field -> (low, high, whether the ends are allowed)
            "a": (-np.inf, np.inf, False),
            "b": (-np.inf, np.inf, False),
            "eer_threshold": (-np.inf, np.inf, False),
            "far_threshold": (-np.inf, np.inf, False),
            "threshold": (-np.inf, np.inf, False),
            "prior": (0.0, 1.0, False),
            "target_far": (0.0, 1.0, False),
            "band": (0.0, 0.5, True),
        }
        for name, (lo, hi, ends) in ranges.items():
            v = getattr(self, name)
            ok = isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)
            if not ok or not (lo <= v <= hi if ends else lo < v < hi):
                span = f"{lo:g}-{hi:g}" if np.isfinite(lo) else "finite"
                raise ConfigError(f"calibration {name} must be a number ({span}), not {v!r:.40}")

    @classmethod
    def fit(
        cls,
        bona,
        spoof,
        prior: float = 0.5,
        target_far: float = 0.01,
        band: float = 0.1,
        fitted_on: str = "",
        domain: str = "deployment",
    ) -> Calibration:
        bona, spoof = np.asarray(bona, np.float64), np.asarray(spoof, np.float64)
        w, b = fit_llr_map(bona[:, None], spoof[:, None], prior=prior)
        a = float(w[0])
        eer, eer_thr = compute_eer(bona, spoof)
        # smallest threshold at which at most target_far of spoofs score >= it
        s = np.sort(spoof)
        k = int(np.ceil(len(s) * (1 - target_far)))
        far_thr = float(np.nextafter(s[k - 1], np.inf)) if k >= 1 else float(s[0])
        cal = cls(
            a=a,
            b=b,
            prior=prior,
            eer_threshold=eer_thr,
            far_threshold=far_thr,
            target_far=target_far,
            threshold=eer_thr,
            band=band,
            fitted_on=fitted_on,
            domain=domain,
        )
        lb, ls = cal.llr(bona), cal.llr(spoof)
        cal.report = {
            "n_bonafide": int(bona.size),
            "n_spoof": int(spoof.size),
            "eer_percent": eer * 100,
            "cllr_before": cllr(bona, spoof),
            "cllr_after": cllr(lb, ls),
            "act_dcf_before": act_dcf(bona, spoof)[0],
            "act_dcf_after": act_dcf(lb, ls)[0],
            "far_at_far_threshold": float(np.mean(spoof >= far_thr)),
            "frr_at_far_threshold": float(np.mean(bona < far_thr)),
        }
        return cal

    def untrusted_because(self) -> str | None:
        """Why verdicts must not claim confidence under this calibration, or None."""
        if self.domain == "deployment":
            return None
        what = self.fitted_on or "data it does not name"
        if self.domain == "training":
            return (
                f"calibrated on {what}, the training data's kind, not recordings like yours; "
                "fit a calibration on your own labelled files (spoofscope calibrate or adapt)"
            )
        return (
            "the calibration does not say what data it was fitted on; refit it on your own "
            "labelled files (spoofscope calibrate or adapt)"
        )

    def llr(self, score):
        return self.a * np.asarray(score, dtype=np.float64) + self.b

    def p_bonafide(self, score):
        return sigmoid(self.llr(score) + np.log(self.prior / (1 - self.prior)))

    def to_dict(self) -> dict:
        return {"type": "logistic", **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> Calibration:
        if not isinstance(d, dict):
            raise ConfigError(f"a calibration is a JSON object, not a {type(d).__name__}")
        d = {k: v for k, v in d.items() if k != "type"}
        return cls(**d)

    def save(self, path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    @classmethod
    def load(cls, path) -> Calibration:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
        except (OSError, ValueError, TypeError) as e:
            raise ConfigError(f"{path}: not a spoofscope calibration file ({e})") from None


def calibration_path_beside(checkpoint) -> Path:
    """Where a calibration file beside a checkpoint lives: ``NAME.calib.json``."""
    p = Path(checkpoint)
    return p.with_name(p.stem + ".calib.json")
