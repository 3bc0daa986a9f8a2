"""``detect``: files and folders, archives on a Ray cluster (``--ray``), and live standard input
(``--stream``)."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from pathlib import Path

from ._common import (
    POSITIVE_INT,
    CLIError,
    _expand_inputs,
    _model_notices,
    _out_folder,
    detector_args,
    detector_for,
    load_detector,
)


class _AudioProgress:
    """A progress bar in seconds of audio. Each file counts for what its header declares; a
    file that stops short (refused, truncated) takes its unread part out of the total and one
    that runs longer adds to it, so the bar ends at exactly 100 %."""

    def __init__(self, durations, disable: bool):
        from tqdm.auto import tqdm

        self.expected = [d or 0.0 for d in durations]
        self.done = [0.0] * len(durations)
        self.bar = tqdm(
            total=sum(self.expected),
            unit="s",
            unit_scale=False,
            desc="audio",
            disable=disable,
            file=sys.stderr,
            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}]",
        )

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.bar.close()

    def reached(self, i: int, seconds: float) -> None:
        """File ``i`` has been read up to ``seconds``."""
        if seconds > self.expected[i]:  # more audio than the header said
            self.bar.total += seconds - self.expected[i]
            self.expected[i] = seconds
        step = seconds - self.done[i]
        if step > 0:
            self.done[i] = seconds
            self.bar.update(min(step, self.bar.total - self.bar.n))

    def finished(self, i: int, ok: bool) -> None:
        """File ``i`` is done: all of it (``ok``), or only what was read."""
        if ok:
            self.reached(i, self.expected[i])
        else:
            self.bar.total = max(self.bar.total - (self.expected[i] - self.done[i]), self.bar.n)
            self.expected[i] = self.done[i]
        self.bar.refresh()


_RAY_ADDRESS = re.compile(r"^(auto|local|ray://\S+|[\w.-]+:\d+)$")


def to_json(obj) -> str:
    """Strict one-line JSON (:func:`spoofscope.infer.detector.to_json`), imported when first
    used: importing the detector loads PyTorch, which ``--version`` and ``--help`` do not need."""
    from ..infer.detector import to_json as strict

    return strict(obj)


def _cmd_detect(a) -> int:
    import csv

    from ..audio import probe_duration

    if a.stream:
        return _detect_stream(a)
    if a.ray is not None:
        return _detect_ray(a)
    if not a.paths:
        raise CLIError("give audio files or folders (or --stream - for standard input)")
    inputs = _expand_inputs(a.paths, a.recursive)
    if not inputs:
        where = ", ".join(a.paths)
        hint = "sub-folders included" if a.recursive else "use --recursive to walk sub-folders"
        raise CLIError(f"{where}: no audio files found ({hint})")
    det = detector_for(a)
    for line in _model_notices(det):
        print(f"note: {line}", file=sys.stderr)
    # progress in seconds of audio (files' headers give the total), so that one long file
    # shows progress too
    durations = [None if a.quiet or not Path(p).is_file() else probe_duration(p) for p in inputs]
    results = []
    with _AudioProgress(durations, disable=a.quiet) as bar:
        for r in det.iter_detect(inputs, progress=bar.reached):
            bar.finished(len(results), ok=r.error is None)
            results.append(r)
    if a.json:
        for r in results:
            print(to_json(r.to_dict()))
    else:
        w = max(len(r.path) for r in results)
        print(
            f"{'file':<{w}}  {'label':<9} {'score':>9} {'p_bonafide':>10} {'conf':>5} "
            f"{'dur_s':>7} {'speech_s':>8}"
        )
        for r in results:
            if r.error:
                print(f"{r.path:<{w}}  ERROR     {r.error}")
            elif r.label == "no_speech":
                print(
                    f"{r.path:<{w}}  {r.label:<9} {'-':>9} {'-':>10} {'-':>5} "
                    f"{r.duration_s:7.2f} {r.speech_s:8.2f}  ({r.reason})"
                )
            else:
                conf = {True: "yes", False: "LOW", None: "-"}[r.confident]
                print(
                    f"{r.path:<{w}}  {r.label:<9} {r.score:9.4f} {r.p_bonafide:10.4f} "
                    f"{conf:>5} {r.duration_s:7.2f} {r.speech_s:8.2f}"
                )
                if a.segments:
                    part = "partially spoofed: " if r.label == "bonafide" and r.spoofed_s else ""
                    print(f"{'':<{w}}  {part}spoofed {r.spoofed_s:.2f} s of {r.duration_s:.2f} s:")
                    for g in r.segments:
                        sc = "-" if g["score"] is None else f"{g['score']:.4f}"
                        print(
                            f"{'':<{w}}    {g['start_s']:8.2f} - {g['end_s']:8.2f} s  "
                            f"{g['label']:<9} {sc:>9}"
                        )
        note = det.confidence_note()
        if note and any(r.label in ("bonafide", "spoof") for r in results):
            print(f"(conf '-': {note})")
    if a.rttm:
        from ..metrics.localisation import write_rttm

        with open(a.rttm, "w") as fh:
            for r in results:
                if r.segments:
                    write_rttm(fh, Path(r.path).stem, r.segments)
    if a.csv:
        cols = [
            "path",
            "label",
            "score",
            "p_bonafide",
            "confident",
            "duration_s",
            "speech_s",
            "window_samples",
            "reason",
            "error",
        ] + (["start_s", "end_s"] if a.segments else [])

        def cell(v):  # lower-case booleans, empty for missing values
            return "" if v is None else str(v).lower() if isinstance(v, bool) else v

        with open(a.csv, "w", newline="") as f:
            cw = csv.writer(f)
            cw.writerow(cols)
            for r in results:
                d = r.to_dict()
                cw.writerow([cell(d.get(c)) for c in cols])
                for g in r.segments if a.segments else []:  # one row per segment
                    cw.writerow([cell({"path": r.path, **g}.get(c)) for c in cols])
    return 1 if any(r.error for r in results) else 0


@contextlib.contextmanager
def _held_stderr(hold: bool):
    """With ``hold`` (``--quiet``), what Ray writes to standard error (Python logging, Ray
    Data's own handlers, the C++ core worker's lines) is kept aside: spoofscope's own
    warnings are shown after the run, everything if the run fails."""
    if not hold:
        yield
        return
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            lines = held.read().decode(errors="replace").splitlines(keepends=True)
            ours = ("WARNING spoofscope", "ERROR spoofscope", "CRITICAL spoofscope")
            sys.stderr.write("".join(ln for ln in lines if failed or ln.startswith(ours)))
            sys.stderr.flush()


def ray_target(ray: str, paths: list[str]) -> tuple[str, list[str]]:
    """``(address, inputs)`` of ``--ray [ADDRESS] INPUTS``: what follows ``--ray`` is its
    address only when it reads as one (auto, local, ray://HOST:PORT, HOST:PORT); else it is
    the first input (``--ray archive/``)."""
    if ray != "auto" and not _RAY_ADDRESS.match(ray):
        return "auto", [ray, *paths]
    return ray, list(paths)


def _detect_ray(a) -> int:
    """``detect --ray [ADDRESS] INPUTS --out RESULTS/``: an archive on a Ray cluster, results
    as Parquet shards (resumable)."""
    import functools

    from ..infer.ray import score_files

    address, paths = ray_target(a.ray, a.paths)
    if not paths:
        raise CLIError("--ray needs inputs: files, folders, globs or URIs")
    if not a.out:
        raise CLIError("--ray writes Parquet shards: give the results folder with --out")
    _out_folder(a.out)
    if a.json or a.csv or a.rttm or a.segments:
        raise CLIError("--ray writes its results to --out (Parquet); drop --json/--csv/--rttm")
    try:
        import ray
    except ImportError:
        raise CLIError("--ray needs Ray: pip install 'spoofscope[ray]'") from None
    if address == "auto" and not os.environ.get("RAY_ADDRESS"):
        # no cluster named: start a local one. Ray's own default (None) would join whatever
        # /tmp/ray/ray_current_cluster names, and hang on a cluster that has since stopped
        address = "local"
    logging.getLogger("ray").setLevel(logging.WARNING)
    with _held_stderr(a.quiet):
        try:
            s = score_files(
                paths,
                a.out,
                functools.partial(load_detector, a),
                address=address,
                actors=a.actors,
                recursive=a.recursive,
                progress=not a.quiet,
            )
        finally:
            if ray.is_initialized():
                ray.shutdown()
    print(
        f"{s['files']} files: {s['skipped']} already in {a.out}, {s['scored']} scored now "
        f"({s['errors']} errors), {s['audio_hours']:.3f} h of audio in {s['seconds']:.1f} s; "
        f"shards: {', '.join(s['shards']) or 'none new'}"
    )
    return 1 if s["errors"] else 0


def _detect_stream(a) -> int:
    """``detect --stream -``: audio on standard input (raw samples, or any container FFmpeg
    reads from a pipe), judged as it arrives; a line per window with the running verdict, a
    line per settled segment, then the result of the whole stream."""
    from ..audio import (
        MAX_SAMPLE_RATE,
        MIN_SAMPLE_RATE,
        RAW_FORMATS,
        AudioError,
        RawDecoder,
        pipe_blocks,
        sniff_container,
    )

    if a.paths != ["-"]:
        raise CLIError("--stream reads standard input: give '-' as the only input")
    det = detector_for(a)
    for line in _model_notices(det):
        print(f"note: {line}", file=sys.stderr)
    src = sys.stdin.buffer
    head = src.read1(65536) if hasattr(src, "read1") else src.read(65536)
    fmt = a.input_format
    if fmt == "auto":
        fmt = "container" if sniff_container(head) else "s16le"
    if fmt == "container":
        rate, pieces = pipe_blocks(head, src)
        if a.input_rate and a.input_rate != rate:
            print(
                f"note: --input-rate {a.input_rate} is ignored: the container on standard "
                f"input says {rate} Hz",
                file=sys.stderr,
            )
    else:
        rate = a.input_rate or det.sample_rate
        if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:  # the rates a file may have
            raise CLIError(
                f"--input-rate {rate} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz, "
                "the rates audio files are read at; give the rate the samples were made at"
            )
        if a.input_format == "auto":
            print(
                f"note: no container header on standard input: reading raw 16-bit samples at "
                f"{rate} Hz, {a.channels} channel(s) (set --input-format and --input-rate if "
                "that is not what is sent)",
                file=sys.stderr,
            )
        decode = RawDecoder(fmt, a.channels)
        block = max(1, rate // 4) * RAW_FORMATS[fmt] * a.channels  # 0.25 s

        def raw():
            data = head
            while data:
                yield decode(data)
                data = src.read(block)

        pieces = raw()
    stream = det.stream(sample_rate=rate, name="<stdin>")

    def show(events):
        for e in events:
            if a.json:
                print(to_json(e), flush=True)
            elif e["type"] == "segment":
                print(f"{e['start_s']:8.2f}-{e['end_s']:8.2f} s  segment: {e['label']}", flush=True)
            else:
                sc = "silent" if e["score"] is None else f"{e['score']:9.4f}"
                so = "-" if e["label"] is None else f"{e['label']} (p {e['p_bonafide']:.3f})"
                print(f"{e['start_s']:8.2f}-{e['end_s']:8.2f} s  {sc:>9}  so far: {so}", flush=True)

    broken = None
    try:
        for x in pieces:
            show(stream.feed(x))
    except AudioError as e:  # what was judged before the damage still gets its result
        broken = e
        print(f"error: {e}; the result below covers the audio before it", file=sys.stderr)
    if fmt != "container" and not broken and decode.leftover:
        print(
            f"warning: standard input ended {decode.leftover} byte(s) into a sample frame "
            f"({decode.frame} bytes: {fmt}, {a.channels} channel(s)); they are not judged: "
            "is --input-format or --channels right?",
            file=sys.stderr,
        )
    r = stream.close()
    show(stream.last_events)
    if a.json:
        print(to_json({"type": "summary", **r.to_dict()}))
    elif r.error:
        print(f"<stdin>  ERROR     {r.error}")
    elif r.label == "no_speech":
        print(f"<stdin>  no_speech  {r.duration_s:.2f} s  ({r.reason})")
    else:
        conf = {True: "yes", False: "LOW", None: "-"}[r.confident]
        print(
            f"<stdin>  {r.label}  score {r.score:.4f}  p_bonafide {r.p_bonafide:.4f}  conf "
            f"{conf}  {r.duration_s:.2f} s, {r.speech_s:.2f} s speech, spoofed {r.spoofed_s:.2f} s"
        )
    return 1 if (r.error or broken) else 0


def add_detect(command) -> None:
    dt = command(
        "detect",
        "is each recording bona fide or spoofed?",
        "Score audio files and folders; one row (or JSON object) per input.",
    )
    # "*": with --ray, argparse gives a lone input to the optional ADDRESS (--ray archive/)
    dt.add_argument("paths", nargs="*", help="audio files or folders")
    detector_args(dt)
    dt.add_argument("--json", action="store_true", help="one JSON object per input")
    dt.add_argument("--csv", metavar="FILE", help="also write a CSV")
    dt.add_argument("--recursive", action="store_true", help="walk sub-folders")
    dt.add_argument(
        "--segments",
        action="store_true",
        help="print where the file is judged bona fide, spoof or silent (segments), and add "
        "a row per segment to --csv",
    )
    dt.add_argument("--rttm", metavar="FILE", help="write the segments in RTTM")
    dt.add_argument(
        "--ray",
        nargs="?",
        const="auto",
        metavar="ADDRESS",
        help="score on a Ray cluster (ADDRESS: auto = $RAY_ADDRESS or a local one, "
        "ray://HEAD:10001, HEAD:6379) into Parquet shards under --out; a rerun skips the files "
        "already there",
    )
    dt.add_argument("--out", metavar="RESULTS", help="--ray: the results folder")
    dt.add_argument(
        "--actors", type=POSITIVE_INT, default=2, help="--ray: detectors scoring in parallel"
    )
    dt.add_argument(
        "--stream",
        action="store_true",
        help="judge raw samples from standard input as they arrive (input '-'): a line per "
        "window with the running verdict, then the result",
    )
    dt.add_argument(
        "--input-rate",
        type=POSITIVE_INT,
        metavar="HZ",
        help="--stream: sample rate of raw samples (default the model's, 16000 for most)",
    )
    dt.add_argument(
        "--input-format",
        choices=("auto", "container", "s16le", "f32le", "mulaw", "alaw"),
        default="auto",
        help="--stream: what standard input carries: a container FFmpeg reads from a pipe "
        "(WAV, FLAC, OGG/Opus, MP3, WebM, ADTS AAC; found by its header under auto), or raw "
        "samples (mulaw/alaw: 8-bit G.711, e.g. 8-kHz telephone audio; auto without a header: "
        "s16le)",
    )
    dt.add_argument(
        "--channels", type=POSITIVE_INT, default=1, help="--stream: interleaved channels (averaged)"
    )
    dt.add_argument("--quiet", action="store_true", help="no progress bar")
    dt.set_defaults(func=_cmd_detect)
