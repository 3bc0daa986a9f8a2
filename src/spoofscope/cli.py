"""The ``spoofscope`` command line: thin sub-commands over the modules."""

from __future__ import annotations

import argparse
import json
import logging
import sys


class CLIError(Exception):
    """An error the CLI prints as one line, then exits with status 2."""


def _cmd_evaluate(a) -> int:
    from .evaluation import evaluate_score_file
    from .metrics.det_plot import plot_det

    rep, bona, spoof = evaluate_score_file(
        a.scores, a.protocol, a.asv_scores, lower_is_bonafide=a.lower_is_bonafide
    )
    if a.det_plot:
        plot_det(bona, spoof, a.det_plot, title=f"DET: {a.scores}")
    if a.json:
        print(json.dumps(rep.to_dict(), indent=2))
    else:
        print(rep.to_text())
        if a.det_plot:
            print(f"\nDET curve written to {a.det_plot}")
    return 0


def _cmd_data_download(a) -> int:
    from .data.download import download_asvspoof2019_la, format_check

    if a.dataset != "asvspoof2019-la":
        raise CLIError(f"unknown dataset {a.dataset!r}; known: asvspoof2019-la")
    rep = download_asvspoof2019_la(
        a.dir, url=a.url, progress=not a.quiet, keep_archive=a.keep_archive
    )
    print(format_check(rep))
    return 0


def _cmd_data_check(a) -> int:
    from .data.download import check_asvspoof2019, format_check

    rep = check_asvspoof2019(a.dir)
    if all(r.get("protocol") is None for r in rep["splits"].values()):
        raise CLIError(
            f"{a.dir}: no ASVspoof 2019 LA protocols found (expected "
            "LA/ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.*.txt)"
        )
    print(json.dumps(rep, indent=2) if a.json else format_check(rep))
    missing = sum(r.get("missing_files", 0) for r in rep["splits"].values())
    return 1 if missing else 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(
        prog="spoofscope", description="Spoofed-speech countermeasures and ASVspoof evaluation."
    )
    p.add_argument("--version", action="version", version=f"spoofscope {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("evaluate", help="EER, min t-DCF and per-attack EER of a CM score file")
    e.add_argument(
        "--scores",
        required=True,
        help="CM scores: 'UTT ATTACK KEY SCORE' (official) or 'UTT SCORE' lines",
    )
    e.add_argument("--protocol", required=True, help="labelled CM protocol of the same trials")
    e.add_argument("--asv-scores", help="official ASV score file, for the min t-DCF")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--det-plot", metavar="FILE.png", help="write a DET curve PNG")
    e.add_argument(
        "--lower-is-bonafide",
        action="store_true",
        help="scores are higher for spoofs (default: higher means bona fide)",
    )
    e.set_defaults(func=_cmd_evaluate)

    d = sub.add_parser("data", help="download and check datasets")
    dsub = d.add_subparsers(dest="data_command", required=True)
    dl = dsub.add_parser("download", help="fetch, check and unpack a dataset")
    dl.add_argument("dataset", help="asvspoof2019-la")
    dl.add_argument("dir", help="where to unpack it")
    from .data.download import ASVSPOOF2019_LA_URL

    dl.add_argument("--url", default=ASVSPOOF2019_LA_URL, help="archive URL (a mirror)")
    dl.add_argument("--keep-archive", action="store_true", help="keep LA.zip after unpacking")
    dl.add_argument("--quiet", action="store_true", help="no progress bar")
    dl.set_defaults(func=_cmd_data_download)
    dc = dsub.add_parser("check", help="report the splits, trials and missing files of a root")
    dc.add_argument("dir")
    dc.add_argument("--json", action="store_true")
    dc.set_defaults(func=_cmd_data_check)
    return p


def main(argv: list[str] | None = None) -> int:
    from .audio import AudioError
    from .data.datasets import MissingAudioError
    from .data.download import DownloadError
    from .data.protocols import ProtocolError
    from .evaluation import ScoreFileError

    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except (
        CLIError,
        AudioError,
        ProtocolError,
        ScoreFileError,
        MissingAudioError,
        DownloadError,
        FileNotFoundError,
        ValueError,
    ) as e:
        print(f"spoofscope {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
