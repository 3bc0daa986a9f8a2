"""Archives on a Ray cluster: files are read and decoded in Ray tasks and scored by a pool of
actors, each holding one :class:`~spoofscope.infer.Detector` (the engine, window policy,
segments and abstention exactly as ``spoofscope detect``); results are Parquet shards with the
fields of ``detect --json``.

    from spoofscope.infer.ray import score_files, read_results
    score_files(["calls/"], "results/", detector=lambda: Detector.load("aasist"),
                address="auto", actors=4)
    rows = read_results("results/")

Resumable: a shard is written whole (to a temporary name, then renamed) and a rerun skips
every file already in a shard, so a crash, a pre-empted node or a killed actor loses at most
the rows not yet written, which the next run scores (never twice). Ray restarts a killed actor
and retries its batch. A file that fails (missing, corrupt, empty) is a row with ``error``.

Inputs are local paths, folders and globs, or URIs of any filesystem ``pyarrow`` reads
(``s3://bucket/prefix``, ``gs://...``, ``file:///...``) where its support is installed.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from ..audio import AUDIO_EXTS, AudioError, audio_files, load_audio
from ..errors import ConfigError
from .detector import DetectionResult, Detector
from .schema import JSON_IN_PARQUET, PARQUET_ROW

log = logging.getLogger(__name__)

#: CPUs a decoding task asks for (actors get the rest)
DECODE_CPUS = 0.25
#: result fields kept as JSON text in the Parquet shards (lists of objects)
JSON_FIELDS = JSON_IN_PARQUET


def _schema():
    """The shards' columns: :data:`~spoofscope.infer.schema.PARQUET_ROW`'s fields."""
    import pyarrow as pa

    kinds = {float: pa.float64(), str: pa.string(), bool: pa.bool_(), int: pa.int64()}
    cols = []
    for f in PARQUET_ROW.fields:
        kind = next(t for t in getattr(f.type, "__args__", (f.type,)) if t is not type(None))
        cols.append((f.name, kinds[kind]))
    return pa.schema(cols)


def expand_inputs(inputs: Iterable[str], recursive: bool = True) -> list[str]:
    """Files named by paths, folders, globs and filesystem URIs (audio extensions only inside
    folders and prefixes), in a stable order, each once."""
    out: list[str] = []
    for item in inputs:
        item = str(item)
        if "://" in item:
            out += _list_uri(item, recursive)
            continue
        if Path(item).is_dir():
            out += audio_files(item, recursive)
        elif any(c in item for c in "*?["):
            out += sorted(f for f in glob.glob(item, recursive=True) if Path(f).is_file())
        else:
            out.append(item)  # a missing file is reported in its own row
    seen: set[str] = set()
    return [f for f in out if not (f in seen or seen.add(f))]


def _list_uri(uri: str, recursive: bool) -> list[str]:
    from pyarrow import fs

    try:
        filesystem, path = fs.FileSystem.from_uri(uri)
    except Exception as e:  # noqa: BLE001 - no support for that scheme installed, bad URI
        raise ConfigError(f"{uri}: cannot open this filesystem ({e})") from None
    scheme = uri.split("://", 1)[0]
    info = filesystem.get_file_info(path)
    if info.type == fs.FileType.File:
        return [uri]
    if info.type == fs.FileType.NotFound:
        return [uri]  # reported in its own row
    sel = fs.FileSelector(path, recursive=recursive)
    files = [i.path for i in filesystem.get_file_info(sel) if i.type == fs.FileType.File]
    files = sorted(f for f in files if Path(f).suffix.lower() in AUDIO_EXTS)
    prefix = "file://" if scheme == "file" else f"{scheme}://"
    return [prefix + f for f in files]


def _read(path: str) -> str | bytes:
    """A local path as is; a URI's bytes."""
    if "://" not in path:
        return path
    from pyarrow import fs

    filesystem, p = fs.FileSystem.from_uri(path)
    try:
        with filesystem.open_input_file(p) as f:
            return f.read()
    except FileNotFoundError:
        raise AudioError(path, "no such file", kind="missing") from None


def _decode(row: dict, rate: int, max_s: float | None) -> dict:
    """A Ray task: the file's samples at the model's rate, decoded as ``detect`` decodes it
    (or its error)."""
    path = row["path"]
    try:
        audio = load_audio(_read(path), rate, max_s, name=path)
        return {"path": path, "audio": audio, "error": "", "error_kind": ""}
    except AudioError as e:
        return {
            "path": path,
            "audio": np.zeros(0, np.float32),
            "error": str(e),
            "error_kind": e.kind or "invalid",
        }
    except OSError as e:
        return {
            "path": path,
            "audio": np.zeros(0, np.float32),
            "error": f"{path}: cannot be read ({e})",
            "error_kind": "invalid",
        }


class _Scorer:
    """A Ray actor: one detector, batches of decoded files -> result rows."""

    def __init__(self, factory: Callable[[], Detector]):
        self.det = factory()

    def __call__(self, batch: dict) -> dict:
        det = self.det
        paths = list(batch["path"])
        ok = [i for i, e in enumerate(batch["error"]) if not e]
        results: dict[int, DetectionResult] = {}
        if ok:
            arrays = [np.asarray(batch["audio"][i], dtype=np.float32) for i in ok]
            for i, r in zip(ok, det.detect_many(arrays, sample_rate=det.sample_rate), strict=True):
                r.path = paths[i]
                results[i] = r
        for i, e in enumerate(batch["error"]):
            if e:
                results[i] = DetectionResult(
                    path=paths[i],
                    model=det.name,
                    error=e,
                    error_kind=batch["error_kind"][i] or None,
                )
        rows = [_row(results[i]) for i in range(len(paths))]
        return {k: [r[k] for r in rows] for k in rows[0]} if rows else {}


def _row(res: DetectionResult) -> dict:
    d = res.to_dict()
    for k in JSON_FIELDS:
        d[k] = json.dumps(d[k])
    return d


def _probe(factory):
    det = factory()
    return {
        "sample_rate": det.sample_rate,
        "name": det.name,
        "max_duration_s": det.limits.max_duration_s,
    }


def done_paths(out: str | os.PathLike) -> set[str]:
    """The files a results folder already holds (every whole shard's ``path`` column)."""
    import pyarrow.parquet as pq

    done: set[str] = set()
    for f in sorted(Path(out).glob("part-*.parquet")):
        try:
            done.update(pq.read_table(f, columns=["path"]).column("path").to_pylist())
        except Exception as e:  # noqa: BLE001 - never written whole: its files are redone
            log.warning("%s is not a readable shard (%s); its files will be scored again", f, e)
    return done


def read_results(out: str | os.PathLike) -> list[dict]:
    """Every row of a results folder, as ``detect --json`` objects (JSON fields parsed)."""
    import pyarrow.parquet as pq

    rows = []
    for f in sorted(Path(out).glob("part-*.parquet")):
        try:
            table = pq.read_table(f)
        except Exception:  # noqa: BLE001 - not a whole shard (done_paths says so)
            continue
        for r in table.to_pylist():
            for k in JSON_FIELDS:
                r[k] = json.loads(r[k]) if r.get(k) else []
            rows.append(r)
    return rows


class _ShardWriter:
    def __init__(self, out: Path, rows_per_shard: int):
        self.out, self.n = out, rows_per_shard
        self.run = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.rows: list[dict] = []
        self.shards: list[str] = []
        self.written: set[str] = set()

    def add(self, row: dict) -> None:
        if row["path"] in self.written:  # a retried batch: never twice
            return
        self.written.add(row["path"])
        self.rows.append(row)
        if len(self.rows) >= self.n:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        name = self.out / f"part-{self.run}-{len(self.shards):05d}.parquet"
        tmp = name.with_suffix(".parquet.tmp")
        pq.write_table(pa.Table.from_pylist(self.rows, schema=_schema()), tmp)
        os.replace(tmp, name)  # whole or not at all
        self.shards.append(name.name)
        self.rows = []


def score_files(
    inputs: Iterable[str],
    out: str | os.PathLike,
    detector: Callable[[], Detector],
    *,
    address: str | None = None,
    actors: int = 2,
    cpus_per_actor: float | None = None,
    batch_files: int = 4,
    rows_per_shard: int = 256,
    recursive: bool = True,
    progress: bool = True,
) -> dict:
    """Score every file of ``inputs`` on a Ray cluster into Parquet shards under ``out``.

    Args:
        detector: a picklable callable that builds the detector in each actor (e.g.
            ``functools.partial(Detector.load, "aasist")``).
        address: the cluster (``"auto"``, ``"ray://head:10001"``, ``"head:6379"``); None
            starts a local one unless ``RAY_ADDRESS`` names one.
        actors: detectors scoring in parallel, ``cpus_per_actor`` CPUs each (default: one,
            or what the cluster has left after half a CPU for decoding, shared out).
    Returns:
        ``{"files", "skipped" (already in out), "scored", "errors", "audio_hours", "shards",
        "seconds"}``.
    """
    try:
        import ray
    except ImportError as e:
        raise ModuleNotFoundError(
            "scoring on Ray needs Ray: pip install 'spoofscope[ray]'", name="ray"
        ) from e

    t0 = time.perf_counter()
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    files = expand_inputs(inputs, recursive)
    if not files:
        raise ConfigError("no input files: give audio files, folders, globs or URIs")
    done = done_paths(outdir)
    todo = [f for f in files if f not in done]
    summary = {
        "files": len(files),
        "skipped": len(files) - len(todo),
        "scored": 0,
        "errors": 0,
        "audio_hours": 0.0,
        "shards": [],
        "seconds": 0.0,
    }
    if not todo:
        return summary
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    if cpus_per_actor is None:
        total = float(ray.cluster_resources().get("CPU", 1.0))
        cpus_per_actor = min(1.0, (total - 2 * DECODE_CPUS) / actors)
        if cpus_per_actor <= 0.05:
            raise ConfigError(
                f"the cluster has {total:g} CPUs: too few for {actors} actors and decoding; "
                "ask for fewer actors"
            )
    info = ray.get(ray.remote(_probe).options(num_cpus=DECODE_CPUS).remote(detector))
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ds = ray.data.from_items(
        [{"path": f} for f in todo], override_num_blocks=max(1, min(len(todo), 4 * actors))
    )
    # decoding runs in tasks of its own (another resource shape than the actors, so Ray does
    # not fuse it into them): reading and decoding scale apart from scoring
    ds = ds.map(
        _decode,
        fn_kwargs={"rate": info["sample_rate"], "max_s": info["max_duration_s"]},
        num_cpus=DECODE_CPUS,
    )
    ds = ds.map_batches(
        _Scorer,
        fn_constructor_kwargs={"factory": detector},
        batch_size=batch_files,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=cpus_per_actor,
        batch_format="numpy",
    )
    writer = _ShardWriter(outdir, rows_per_shard)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="file", desc="scoring", dynamic_ncols=True)
    try:
        for batch in ds.iter_rows():
            row = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in batch.items()}
            writer.add(row)
            summary["scored"] += 1
            summary["errors"] += bool(row.get("error"))
            summary["audio_hours"] += (row.get("duration_s") or 0.0) / 3600
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"{summary['audio_hours']:.3f} h audio")
    finally:
        writer.flush()
        if bar is not None:
            bar.close()
    summary["shards"] = writer.shards
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    return summary
