"""``explain``: why this verdict, as a relevance map over time x frequency (JSON, PNG and one
line)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ._common import (
    NON_NEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    CLIError,
    _model_notices,
    _out_folder,
    detector_args,
    detector_for,
)


def _cmd_explain(a) -> int:
    from ..infer.explain import load_segment, save_png

    out = _out_folder(a.out)
    try:  # before the work, so that an unwritable --out costs no explanation
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        msg = f"--out {out}: cannot create the folder ({e.strerror}); give a writable one"
        raise CLIError(msg) from None
    det = detector_for(a)
    for line in _model_notices(det):
        print(f"note: {line}", file=sys.stderr)
    e = det.explain(
        a.path,
        method=a.method,
        start_s=a.start,
        end_s=a.end,
        budget=a.budget,
        tile_s=a.tile_s,
        n_bands=a.bands,
        name=a.path,
    )
    from ..infer.detector import finite  # here: --help must not load PyTorch

    stem = out / Path(a.path).stem
    audio, _, _ = load_segment(det, a.path, a.start, a.end)
    try:
        Path(f"{stem}.explain.json").write_text(
            json.dumps(finite(e.to_dict()), indent=1, allow_nan=False) + "\n"
        )
        save_png(e, audio, det.sample_rate, f"{stem}.explain.png")
    except OSError as err:
        msg = f"--out {out}: cannot write {err.filename or stem} ({err.strerror})"
        raise CLIError(msg) from None
    if e.label == "no_speech":
        print(f"{a.path}: no_speech: {e.reason}")
    else:
        print(
            f"{a.path}: {e.label} (score {e.score:.4f}); {e.method}, {e.passes} passes, "
            f"{e.seconds:.1f} s: {e.summary}"
        )
    print(f"wrote {stem}.explain.json and {stem}.explain.png", file=sys.stderr)
    return 0


def add_explain(command) -> None:
    from ..infer.explain import (
        DEFAULT_BANDS,
        DEFAULT_BUDGET,
        DEFAULT_METHOD,
        DEFAULT_TILE_S,
        METHODS,
    )

    ex = command(
        "explain",
        "why this verdict: a relevance map over time x frequency",
        "Which time-frequency tiles of a recording (or of --start/--end) moved the model's "
        "score towards its verdict: JSON (tiles, method, baseline), a PNG (spectrogram with the "
        "relevance overlay, the window scores above, the verdict in the title) and one line. "
        "A relevance map shows what moved this model's score, not proof of manipulation; a "
        "recording the detector abstains on (no_speech) has no explanation.",
    )
    ex.add_argument("path", help="an audio file")
    detector_args(ex)
    ex.add_argument(
        "--method",
        choices=tuple(METHODS),
        default=DEFAULT_METHOD,
        help="occlusion: remove each tile and score again (every engine); integrated-gradients: "
        "gradients of a PyTorch model (docs/explain.md: how faithful each was measured)",
    )
    ex.add_argument("--start", type=NON_NEGATIVE, metavar="SECONDS", help="explain from here")
    ex.add_argument("--end", type=POSITIVE, metavar="SECONDS", help="explain up to here")
    ex.add_argument(
        "--budget",
        type=POSITIVE_INT,
        default=DEFAULT_BUDGET,
        metavar="PASSES",
        help="at most this many windows through the network (occlusion coarsens its tiles to "
        "fit, integrated-gradients takes fewer steps)",
    )
    ex.add_argument(
        "--tile-s", type=POSITIVE, default=DEFAULT_TILE_S, metavar="SECONDS", help="tile length"
    )
    ex.add_argument(
        "--bands", type=POSITIVE_INT, default=DEFAULT_BANDS, help="equal frequency bands"
    )
    ex.add_argument("--out", default=".", metavar="DIR", help="folder for FILE.explain.json/.png")
    ex.set_defaults(func=_cmd_explain)
