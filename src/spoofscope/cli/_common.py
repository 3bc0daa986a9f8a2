"""What the command groups share: the error type, argument types, the parser class, inputs, and
the detector options."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..errors import SpoofscopeError


class CLIError(SpoofscopeError):
    """An error the CLI prints as one line, then exits with status 2."""


def _expand_inputs(paths, recursive: bool) -> list[str]:
    from ..audio import audio_files

    out = []
    for p in paths:
        if Path(p).is_dir():
            out += audio_files(p, recursive)
        else:
            out.append(p)  # a missing file is reported in its own row
    return out


def _model_notices(det) -> list[str]:
    """What a user must read before trusting the model's verdicts, printed once at start:
    the licence of non-commercial weights, and the card's notes (training data, known
    misses)."""
    card = det.card
    out = []
    if card.licence_class == "non-commercial":
        out.append(
            f"{det.name}: non-commercial licence: {card.licence}. Use it for research and "
            "non-commercial work only"
        )
    if card.notes:
        out.append(f"{det.name}: {card.notes}")
    return out


def load_detector(a, max_duration_s: float | None = None):
    from ..infer import Decision, Detector, Limits, WindowPolicy

    windows = WindowPolicy(
        kind=a.window, samples=a.window_samples, hop_s=a.hop or 2.0, aggregate=a.aggregate
    )
    if any(getattr(a, k, None) for k in ("segments", "rttm", "stream")):
        windows = windows.localising()  # the measured localisation windows (README)
    return Detector.load(
        a.model,
        weights=a.weights,
        bonafide_label=a.bonafide_label,
        config=a.config,
        engine=a.engine,
        precision=a.precision,
        calibration=a.calibration,
        windows=windows,
        decision=Decision(
            threshold=a.threshold,
            min_speech_s=a.min_speech,
            **({"vad": a.vad} if a.vad else {}),
        ),
        limits=Limits(batch_size=a.batch_size, max_duration_s=max_duration_s),
    )


def _out_folder(path) -> Path:
    """``--out``: a folder, new or existing; an existing file there is named, not hit as
    errno 17 deep inside."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise CLIError(f"--out {p} is an existing file; give a folder (new or existing)")
    return p


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` where there is a default worth showing."""

    def _get_help_string(self, action):
        if action.default in (None, False) or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit status 2) and defaults shown in the help."""

    def __init__(self, *a, **k):
        k.setdefault("formatter_class", _Help)
        super().__init__(*a, **k)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _number(kind, lo=None, hi=None, lo_open=False, hi_open=False, what="a number"):
    """An argparse type: a finite ``kind`` within the bounds, else a one-line error."""

    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if isinstance(v, float) and not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if lo is not None and (v < lo or (lo_open and v == lo)):
            raise argparse.ArgumentTypeError(f"{text} must be {'>' if lo_open else '>='} {lo}")
        if hi is not None and (v > hi or (hi_open and v == hi)):
            raise argparse.ArgumentTypeError(f"{text} must be {'<' if hi_open else '<='} {hi}")
        return v

    return parse


POSITIVE = _number(float, 0, lo_open=True, what="a positive number")


NON_NEGATIVE = _number(float, 0, what="a number >= 0")


FINITE = _number(float, what="a number")


POSITIVE_INT = _number(int, 1, what="an integer >= 1")


FOLDS = _number(int, 2, what="an integer >= 2")


NON_NEGATIVE_INT = _number(int, 0, what="an integer >= 0")


PROBABILITY = _number(float, 0, 1, lo_open=True, hi_open=True, what="a probability in (0, 1)")


BAND = _number(float, 0, 0.5, what="a probability half-width in [0, 0.5]")


PORT = _number(int, 1, 65535, what="a TCP port")


def detector_for(a, **kw):
    """The detector a command's options describe, through ``spoofscope.cli._build_detector``
    (looked up at call time: an embedder or a test may put another loader there)."""
    from . import _build_detector

    return _build_detector(a, **kw)


def detector_args(sp) -> None:
    """The options that choose and configure the detector (detect, serve, calibrate, ...)."""
    from ..infer.policy import AGGREGATES, ENGINES, PRECISIONS, WINDOW_KINDS

    sp.add_argument(
        "--model",
        default="aasist",
        help="NAME[:TAG] of a registered model (published weights), a spoofscope "
        "checkpoint, a state_dict file, or hf:OWNER/REPO[@REVISION] / hf:FOLDER (a "
        "transformers audio classifier)",
    )
    sp.add_argument("--weights", help="your own state_dict file for the architecture --model names")
    sp.add_argument(
        "--bonafide-label",
        metavar="LABEL",
        help="for hf: models: the label of the bona fide class (default: found among "
        "real/bonafide/genuine/human)",
    )
    sp.add_argument("--config", help="official AASIST .conf/model_config for a state_dict")
    sp.add_argument("--calibration", help="calibration JSON from 'spoofscope calibrate'")
    sp.add_argument(
        "--engine",
        "--backend",
        dest="engine",
        choices=ENGINES,
        default="auto",
        help="inference engine: auto = ONNX Runtime where the model exports (exported once "
        "into the cache), else PyTorch",
    )
    sp.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="int8 only for models whose card lists it (scores measured close to fp32)",
    )
    sp.add_argument(
        "--window",
        choices=WINDOW_KINDS,
        default="sliding",
        help="sliding windows over the whole file, or the official first window",
    )
    sp.add_argument(
        "--window-samples",
        type=POSITIVE_INT,
        metavar="N",
        help="window length in samples (default: the model card's window)",
    )
    sp.add_argument(
        "--hop",
        type=POSITIVE,
        default=None,
        metavar="SECONDS",
        help="hop between sliding windows (default 2)",
    )
    sp.add_argument(
        "--aggregate", choices=AGGREGATES, default="mean", help="how window scores combine"
    )
    sp.add_argument(
        "--threshold",
        type=FINITE,
        help="score threshold of the label (default: calibrated, else equal logits)",
    )
    sp.add_argument("--batch-size", type=POSITIVE_INT, default=8, help="windows per forward pass")
    sp.add_argument(
        "--min-speech",
        type=NON_NEGATIVE,
        default=0.5,
        metavar="SECONDS",
        help="abstain (label no_speech) below this much speech",
    )
    sp.add_argument(
        "--vad",
        choices=("silero", "energy"),
        help="speech detector behind no_speech: silero (default; $SPOOFSCOPE_VAD) or "
        "energy (sound above -50 dBFS)",
    )
