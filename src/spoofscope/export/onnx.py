"""ONNX export of registered models and the onnxruntime agreement check.

What to export is read from the model card: ``export`` says whether the graph takes any length
(``dynamic``), only the card's window (``fixed``: AASIST's graph pooling keeps ``int(N * k)``
nodes, so the graph follows the length) or cannot be exported (``none``).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import io
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError
from ..models._card import card_of

log = logging.getLogger(__name__)


#: elementwise ops with f(0) = 0: on ONNX Runtime's blocked (NCHWc) layout they give the same
#: numbers as on the plain one, and the zero padding channels of that layout stay zero
_LAYOUT_FREE = frozenset({"Selu", "Elu", "Abs", "Relu", "LeakyRelu", "Tanh"})
_NCHWC = "com.microsoft.nchwc"


def _options(threads, optimize: bool = True):
    import onnxruntime as ort

    so = ort.SessionOptions()
    # like PyTorch, honour OMP_NUM_THREADS when it is set (Ray sets it to an actor's CPUs)
    env = os.environ.get("OMP_NUM_THREADS", "")
    from_env = int(env) if env.isdigit() and int(env) > 0 else None
    so.intra_op_num_threads = threads or from_env or min(os.cpu_count() or 1, 8)
    so.inter_op_num_threads = 1
    so.log_severity_level = 3  # its note that an NCHWc graph is specific to this CPU: we know
    so.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if optimize
        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    return so


def drop_layout_round_trips(graph) -> int:
    """Remove ONNX Runtime's layout conversions around elementwise ops (in place).

    ONNX Runtime runs convolutions in a blocked channel layout (NCHWc) and converts back to the
    plain layout around any op its layout pass does not know, e.g. AASIST's SELU between the
    two convolutions of every residual block: a pass over the whole activation each way, about
    a sixth of AASIST's time. An elementwise op with f(0) = 0 does not care about the layout,
    so ``ReorderOutput -> op -> ReorderInput`` becomes ``op``. Returns the number removed."""
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    producer = {o: n for n in graph.node for o in n.output}
    outputs = {o.name for o in graph.output}

    def attr(n, name):
        return next((a.i for a in n.attribute if a.name == name), 0)

    drop, stale = [], set()
    for op in graph.node:
        if op.op_type not in _LAYOUT_FREE or op.domain not in ("", "ai.onnx") or len(op.input) != 1:
            continue
        before = producer.get(op.input[0])
        after = consumers.get(op.output[0], [])
        if (
            before is None
            or (before.op_type, before.domain) != ("ReorderOutput", _NCHWC)
            or len(consumers[op.input[0]]) != 1
            or len(after) != 1
            or (after[0].op_type, after[0].domain) != ("ReorderInput", _NCHWC)
            or attr(before, "channels_last")
            or attr(after[0], "channels_last")
            or {op.input[0], op.output[0]} & outputs
        ):
            continue
        stale |= {op.input[0], op.output[0]}
        op.input[0], op.output[0] = before.input[0], after[0].output[0]
        drop += [before, after[0]]
    for n in drop:
        graph.node.remove(n)
    kept = [v for v in graph.value_info if v.name not in stale]
    del graph.value_info[:]
    graph.value_info.extend(kept)
    return len(drop) // 2


def ort_session(path, threads: int | None = None):
    """An onnxruntime CPU session with all graph optimisations, and without the layout
    conversions around elementwise ops (:func:`drop_layout_round_trips`) where the optimised
    graph has them. The optimised graph is specific to this CPU, so it is made each time;
    graphs over 256 MB keep ONNX Runtime's own."""
    try:
        import onnx
        import onnxruntime as ort
    except ImportError as e:  # pragma: no cover - onnxruntime is a dependency
        raise ConfigError("the ONNX engine needs onnxruntime: pip install onnxruntime") from e
    providers = ["CPUExecutionProvider"]
    if graph_bytes(path) > 256 << 20:
        # the XLS-R models: transformer encoders, no SELU-like op between convolutions, and
        # too large to write the optimised graph out for nothing
        return ort.InferenceSession(str(path), _options(threads), providers=providers)
    with tempfile.TemporaryDirectory() as tmp:
        so = _options(threads)
        so.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        try:
            session = ort.InferenceSession(str(path), so, providers=providers)
        except Exception as e:  # noqa: BLE001 - e.g. a graph ORT cannot write out again
            log.debug("ONNX Runtime's optimised graph not written (%s)", e)
            return ort.InferenceSession(str(path), _options(threads), providers=providers)
        try:
            m = onnx.load(so.optimized_model_filepath)
            if not drop_layout_round_trips(m.graph):
                return session
            onnx.save(m, Path(tmp) / "lean.onnx")
            lean = ort.InferenceSession(
                str(Path(tmp) / "lean.onnx"), _options(threads, optimize=False), providers=providers
            )
        except Exception as e:  # noqa: BLE001 - the optimised session is correct as it is
            log.debug("kept ONNX Runtime's layout conversions (%s)", e)
            return session
    return lean


#: models whose parameters pass this many bytes keep them in one external data file beside the
#: graph (``<graph>.onnx.data``): a protobuf stops at 2 GB (the 1B and 2B encoders are 4-9 GB)
EXTERNAL_BYTES = 1 << 30


def export_onnx(
    model: torch.nn.Module,
    path,
    length: int | None = None,
    opset: int = 17,
    external: bool | None = None,
    data_file: str | None = None,
) -> Path:
    """Export ``model`` to ONNX with a dynamic batch axis (and a dynamic length where its card
    says ``export: dynamic``). Input ``waveform`` (B, L); outputs ``logits`` (B, 2),
    ``embedding`` (B, D). ``length`` defaults to the card's window. ``external`` (default:
    parameters over :data:`EXTERNAL_BYTES`): the weights go to one file ``data_file`` (default
    ``<path name>.data``) beside the graph, which ONNX Runtime reads from there."""
    card = card_of(model)
    if card.export == "none":
        raise ConfigError(f"{card.name} cannot be exported to ONNX (its card says export: none)")
    model = model.eval()
    length = int(length or card.window_samples)
    axes = {"waveform": {0: "batch"}, "logits": {0: "batch"}, "embedding": {0: "batch"}}
    if card.export == "dynamic":
        axes["waveform"][1] = "length"
    x = torch.randn(2, length) * 0.1
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if external is None:
        external = sum(p.numel() * p.element_size() for p in model.parameters()) > EXTERNAL_BYTES
    data = data_file or f"{path.name}.data"
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        # over 2 GB torch writes a file per tensor beside the graph: in a folder of its own.
        # The graph and its data file are moved into place once whole, the data first: an
        # export that fails or is interrupted leaves the files that were there as they were
        traced = Path(tmp) / "traced" / "model.onnx"
        traced.parent.mkdir()
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (x,),
                str(traced),
                input_names=["waveform"],
                output_names=["logits", "embedding"],
                dynamic_axes=axes,
                opset_version=opset,
                dynamo=False,
            )
        done = Path(tmp) / path.name
        if external or len(list(traced.parent.iterdir())) > 1:
            gather_external(traced, done, data)
            (Path(tmp) / data).replace(path.parent / data)
        else:
            traced.replace(done)
            (path.parent / data).unlink(missing_ok=True)  # a stale one, from an earlier export
        done.replace(path)
    return path


def _graphs(graph):
    """``graph`` and its subgraphs (``If``/``Loop`` bodies), depth first."""
    yield graph
    for node in graph.node:
        for att in node.attribute:
            if att.HasField("g"):
                yield from _graphs(att.g)
            for g in att.graphs:
                yield from _graphs(g)


def _tensors(graph):
    """Every tensor of ``graph``: initializers and node attributes, subgraphs included."""
    for g in _graphs(graph):
        yield from g.initializer
        for node in g.node:
            for att in node.attribute:
                if att.HasField("t"):
                    yield att.t
                yield from att.tensors


#: tensors at least this large go to the external data file (as onnx's own save does)
_EXTERNAL_MIN = 1024
_ALIGN = 4096  # each tensor starts on a page, so that the data can be mapped in place
_CHUNK = 64 << 20


def _to_file(t, src_dir: Path, out, location: str) -> None:
    """Move tensor ``t`` into the data file open as ``out`` (named ``location``), on a page of
    its own: from its external file in ``src_dir`` in 64-MiB chunks, or from its inline bytes
    (at least 1 KiB; smaller ones stay inline)."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    if uses_external_data(t):
        info = ExternalDataInfo(t)
        where = src_dir / info.location
        left = info.length if info.length else where.stat().st_size - (info.offset or 0)
        out.write(b"\0" * (-out.tell() % _ALIGN))
        offset = out.tell()
        with open(where, "rb") as f:
            f.seek(info.offset or 0)
            while left > 0:
                chunk = f.read(min(_CHUNK, left))
                if not chunk:
                    raise ConfigError(f"{where}: ends before tensor {t.name!r} does")
                out.write(chunk)
                left -= len(chunk)
    elif t.HasField("raw_data") and len(t.raw_data) >= _EXTERNAL_MIN:
        out.write(b"\0" * (-out.tell() % _ALIGN))
        offset = out.tell()
        out.write(t.raw_data)
        t.ClearField("raw_data")
    else:
        return
    del t.external_data[:]
    t.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", offset), ("length", out.tell() - offset)):
        entry = t.external_data.add()
        entry.key, entry.value = key, str(value)


def _save_external(model, src_dir: Path, dst: Path, data: str, more=()) -> Path:
    """Save ``model`` (loaded without its external data, which lies in ``src_dir``) to ``dst``
    with every tensor of at least 1 KiB in one file ``data`` beside it, one tensor at a time;
    then the initializers ``more`` yields, each moved to the file before the next is made."""
    import onnx

    target = dst.parent / data
    if any(
        e.key == "location" and (src_dir / e.value).resolve() == target.resolve()
        for t in _tensors(model.graph)
        for e in t.external_data
    ):
        raise ConfigError(f"{target}: the new graph's data file would overwrite its source's")
    if target.resolve() == dst.resolve():
        raise ConfigError(f"{target}: the data file would be the graph itself; name another")
    target.unlink(missing_ok=True)
    with open(target, "wb") as out:
        for t in _tensors(model.graph):
            _to_file(t, src_dir, out, data)
        for t in more:
            _to_file(t, src_dir, out, data)
            model.graph.initializer.append(t)
    onnx.save_model(model, str(dst))
    return dst


def gather_external(src, dst, data: str) -> Path:
    """Write the graph ``src`` to ``dst`` with every tensor of at least 1 KiB in one file
    ``data`` beside ``dst`` (page-aligned), moved one tensor at a time: from ``src``'s own
    external files (torch writes one per tensor over 2 GB) in 64-MiB chunks, or from the
    tensor's inline bytes. Loading the whole model to save it again held every weight twice
    (``onnx.load`` + ``save_model``): 8 GiB more for the 2B encoder, which a 24-GB machine
    could not give."""
    import onnx

    src, dst = Path(src), Path(dst)
    model = onnx.load(str(src), load_external_data=False)
    return _save_external(model, src.parent, dst, data)


def graph_bytes(path) -> int:
    """Bytes of an ONNX graph with the external data files beside it (``<name>.data``)."""
    path = Path(path)
    data = path.with_name(f"{path.name}.data")
    return path.stat().st_size + (data.stat().st_size if data.is_file() else 0)


def check_onnx(model: torch.nn.Module, path, inputs: np.ndarray, atol: float = 1e-3) -> float:
    """Max |onnxruntime - PyTorch| over the logits of ``inputs`` (N, L); raises if > atol."""
    sess = ort_session(path, threads=1)
    x = np.ascontiguousarray(inputs, np.float32)
    with torch.no_grad():
        ref = model.eval()(torch.from_numpy(x))[0].numpy()
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    diff = float(np.abs(got - ref).max())
    if diff > atol:
        raise AssertionError(f"{path}: onnxruntime differs from PyTorch by {diff} > {atol}")
    return diff


def _fingerprint(model, length: int) -> str:
    """Architecture, traced length, weights and the versions of spoofscope and torch: a change
    in any of them gives a new file."""
    from .. import __version__

    card = card_of(model)
    h = hashlib.sha256()
    h.update(f"{card.name}|{length}|{card.export}".encode())
    h.update(f"{__version__}|{torch.__version__}".encode())
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    h.update(buf.getvalue())
    return h.hexdigest()[:16]


#: what the int8 graph quantises: the matrix products with a constant weight inside the SSL
#: encoder's transformer layers (attention projections and feed-forward layers). The
#: convolutions (feature extractor, positional convolution) stay fp32: ONNX Runtime's
#: ConvInteger was 2x slower than its fp32 convolution here; so do the feature projection and
#: the back-end, which halves the logit error of AntiDeepfake w2v-small at no measurable cost
#: (benchmarks/precision.py --model). torch exports the layers' linear maps as MatMul (their
#: input is 3-D); a Gemm with a constant weight there is refused rather than left fp32 unsaid.
INT8_OPS = ("MatMul",)
INT8_SCOPE = "/encoder/layers."
#: the int8 graph's format: raised whenever :func:`quantize_int8` writes a different graph for
#: the same fp32 one, so that int8 graphs cached by an earlier build are made again
INT8_FORMAT = 2


def _weight(t, src_dir: Path) -> np.ndarray:
    """The fp32 values of initializer ``t``: from its external file (this tensor's bytes only)
    or its inline data."""
    from onnx import numpy_helper
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    if not uses_external_data(t):
        return numpy_helper.to_array(t)
    info = ExternalDataInfo(t)
    where = src_dir / info.location
    n = int(np.prod(t.dims))
    w = np.fromfile(where, dtype="<f4", count=n, offset=info.offset or 0)
    if w.size != n:
        raise ConfigError(f"{where}: ends before tensor {t.name!r} does")
    return w.reshape(tuple(t.dims))


def int8_weight(w: np.ndarray, per_channel: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 of a MatMul weight ``w`` (K, N), zero point 0, with one scale per output
    channel (column) or one for all: the numbers onnxruntime's ``quantize_dynamic`` gives
    (QInt8, ``quant_utils.compute_scale_zp`` and ``quantize_nparray``): the range is widened
    to take 0 and made symmetric, scale = 2 max|w| / 254 in float64 stored as float32 (1 where
    that is below float32's smallest normal), q = w / scale in float32 rounded half to even
    and clipped to [-128, 127]. Returns (q int8, scale float32)."""
    axis = 0 if per_channel else None
    rmin = np.minimum(w.min(axis=axis), np.float32(0))
    rmax = np.maximum(w.max(axis=axis), np.float32(0))
    absmax = np.maximum(np.abs(rmin), np.abs(rmax))
    wide = (absmax.astype(np.float64) - (-absmax).astype(np.float64)) / 254.0
    scale = np.where(wide < np.finfo(np.float32).tiny, 1.0, wide).astype(np.float32)
    q = w / scale
    np.round(q, out=q)
    np.clip(q, -128, 127, out=q)
    return q.astype(np.int8), scale


def _int8_nodes(model, src) -> dict:
    """Replace each MatMul of ``model`` under :data:`INT8_SCOPE` whose weight is a 2-D fp32
    initializer by the nodes ``quantize_dynamic`` writes for it (``DynamicQuantizeLinear`` of
    the input, one per input however many MatMuls read it, ``MatMulInteger``, ``Cast``, the
    product of the two scales, ``Mul``), in place. The fp32 weights nothing reads any more are
    dropped. Returns {weight name: its fp32 initializer}, for :func:`int8_weight`."""
    import onnx
    from onnx import TensorProto, helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    nodes, acts, weights = [], {}, {}
    for n in graph.node:
        b = inits.get(n.input[1]) if len(n.input) > 1 else None
        if INT8_SCOPE not in n.name or b is None:
            nodes.append(n)
            continue
        if n.op_type == "Gemm":
            raise ConfigError(
                f"{src}: {n.name} is a Gemm with a constant weight in the transformer layers; "
                "the int8 graph quantises MatMul only: use --precision fp32"
            )
        if n.op_type not in INT8_OPS or b.data_type != TensorProto.FLOAT or len(b.dims) != 2:
            nodes.append(n)
            continue
        if opset < 11:
            raise ConfigError(f"{src}: opset {opset} has no DynamicQuantizeLinear (needs 11+)")
        x, out = n.input[0], n.output[0]
        if x not in acts:
            acts[x] = [f"{x}_quantized", f"{x}_scale", f"{x}_zero_point"]
            dql = helper.make_node("DynamicQuantizeLinear", [x], acts[x], f"{x}_QuantizeLinear")
            nodes.append(dql)
        weights[b.name] = b
        xq, xs, xz = acts[x]
        wq, ws, wz = (f"{b.name}{s}" for s in ("_quantized", "_scale", "_zero_point"))
        name = f"{n.name}_quant"
        prod, mul = f"{out}_output_quantized", f"{name}_scales_mul"
        nodes += [
            helper.make_node("MatMulInteger", [xq, wq, xz, wz], [prod], name),
            helper.make_node("Cast", [prod], [f"{prod}_cast_output"], f"{prod}_cast", to=1),
            helper.make_node("Mul", [xs, ws], [f"{mul}:0"], mul),
            helper.make_node(
                "Mul", [f"{prod}_cast_output", f"{mul}:0"], [out], f"{name}_output_scale_mul"
            ),
        ]
    del graph.node[:]
    graph.node.extend(nodes)
    read = {o.name for o in graph.output}
    for t in _graphs(graph):
        read.update(i for n in t.node for i in n.input)
    kept, sources = [], {}
    for t in graph.initializer:
        if t.name in weights:
            sources[t.name] = onnx.TensorProto()
            sources[t.name].CopyFrom(t)
        if t.name in read or t.name not in weights:
            kept.append(t)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    # a graph that lists its initializers as inputs too (older exporters) loses those inputs
    # with them, as with quantize_dynamic: else the session would ask for the fp32 weights
    gone = set(weights) - {t.name for t in kept}
    inputs = [i for i in graph.input if i.name not in gone]
    del graph.input[:]
    graph.input.extend(inputs)
    return sources


def quantize_int8(src, dst, per_channel: bool = True, data_file: str | None = None) -> Path:
    """Dynamic int8 of ``src``'s :data:`INT8_OPS` with a constant weight in the encoder's
    transformer layers (node names containing :data:`INT8_SCOPE`), written to ``dst``: the
    graph onnxruntime's ``quantize_dynamic`` (QInt8, ``MatMulConstBOnly``) writes for those
    nodes, with the same int8 weights and scales (:func:`int8_weight`), made one weight at a
    time. ``quantize_dynamic`` loads the whole fp32 graph and peaks at about 3x its weights
    (11.9 GB for the 1B encoder); here a graph with external data (over
    :data:`EXTERNAL_BYTES`) is read tensor by tensor from its data file and written to
    ``dst``'s (``data_file``, default ``<dst name>.data``), so the memory taken is a few times
    the largest weight's (read, divided, rounded), not the model's. ONNX Runtime fuses the
    nodes into ``DynamicQuantizeMatMul`` / ``MatMulIntegerToFloat``, whose u8s8 GEMM (MLAS)
    picks its kernel from the CPU's flags (AVX-512 VNNI, AVX-VNNI, AMX) when the session
    starts."""
    import onnx
    from onnx import numpy_helper
    from onnx.external_data_helper import uses_external_data

    src, dst = Path(src), Path(dst)
    model = onnx.load(str(src), load_external_data=False)
    external = graph_bytes(src) > EXTERNAL_BYTES or any(
        uses_external_data(t) for t in _tensors(model.graph)
    )
    sources = _int8_nodes(model, src)
    if not sources:
        raise ConfigError(
            f"{src}: no MatMul with a constant weight under {INT8_SCOPE!r} (no SSL transformer "
            "encoder) to quantise; use --precision fp32"
        )

    def made():
        for name, t in sources.items():
            q, scale = int8_weight(_weight(t, src.parent), per_channel)
            yield numpy_helper.from_array(q, f"{name}_quantized")
            yield numpy_helper.from_array(scale, f"{name}_scale")
            yield numpy_helper.from_array(np.zeros(scale.shape, np.int8), f"{name}_zero_point")

    if external:
        _save_external(model, src.parent, dst, data_file or f"{dst.name}.data", made())
    else:
        model.graph.initializer.extend(made())
        onnx.save_model(model, str(dst))
    # the value shapes quantize_dynamic infers too: with them ONNX Runtime's optimiser fuses
    # more (SkipLayerNormalization, folded shape arithmetic), and without them the same int8
    # weights gave other logits (2e-3 apart on AntiDeepfake w2v-small); the graph file only, the
    # weights stay where they are
    onnx.shape_inference.infer_shapes_path(str(dst), str(dst))
    return dst


def _writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise PermissionError(13, "not writable")
    except OSError as e:
        raise ConfigError(
            f"cannot write the ONNX export into the cache {folder} "
            f"({e.strerror or e}); set SPOOFSCOPE_CACHE to a writable folder"
        ) from None


#: a graph file this large keeps its weights inline (one with external data holds only its
#: structure and tensors under 1 KiB: a few MB for the 2B encoder)
_INLINE_GRAPH = 64 << 20


def _complete(path: Path, say: bool = False) -> bool:
    """Whether ``path`` is a graph whose external data files beside it hold every byte its
    tensors point at (a data file cut short or deleted, e.g. by a full disk or an interrupted
    copy, would fail in ONNX Runtime, or under ``--engine auto`` leave the model in PyTorch
    for good)."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    if not path.is_file():
        return False
    if path.stat().st_size > _INLINE_GRAPH:
        return True  # its weights inline (not parsed again here): no data file to check
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - a graph cut short: made again
        return False
    need: dict[str, int] = {}
    for t in _tensors(model.graph):
        if uses_external_data(t):
            info = ExternalDataInfo(t)
            end = (info.offset or 0) + (info.length or 1)
            need[info.location] = max(need.get(info.location, 0), end)
    for name, end in need.items():
        data = path.parent / name
        if not data.is_file() or data.stat().st_size < end:
            if say:
                log.warning("%s: its data file %s is cut short or missing: made again", path, data)
            return False
    return True


@contextlib.contextmanager
def _locked(path: Path):
    """Hold an exclusive lock on ``path`` (made if need be) where the system has ``flock``:
    processes and threads building the same cache entry take turns. Yields whether locked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no flock (Windows): no lock
        yield False
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _cached(path: Path, make) -> Path:
    """``path`` as it is if complete (:func:`_complete`); else made by ``make(out)`` (the graph
    ``out``, its data file, if any, ``<out name>.data`` beside it) in a folder of its own in
    the cache, under a lock that other builders of ``path`` wait on, and moved into place data
    first: a graph is never seen before its data, nor two builders' files mixed. The folder a
    killed builder left is removed by the next."""
    if _complete(path):
        return path
    _writable(path.parent)
    try:
        with _locked(path.with_name(f"{path.name}.lock")) as locked:
            if _complete(path, say=True):  # another process or thread made it meanwhile
                return path
            for old in path.parent.glob(f"{glob.escape(path.name)}.*"):
                if locked and old.is_dir():  # the folder of a builder killed before
                    shutil.rmtree(old, ignore_errors=True)
            with tempfile.TemporaryDirectory(dir=path.parent, prefix=f"{path.name}.") as tmp:
                out = Path(tmp) / path.name
                make(out)
                data = out.with_name(f"{out.name}.data")
                if data.is_file():
                    data.replace(path.with_name(data.name))
                out.replace(path)
    except OSError as e:
        raise ConfigError(
            f"cannot write the ONNX export into the cache {path.parent} "
            f"({e.strerror or e}); free space there or set SPOOFSCOPE_CACHE to another folder"
        ) from None
    return path


def cached_onnx(model, cache=None, length: int | None = None, precision: str = "fp32") -> Path:
    """Export once per (architecture, traced length, weights, versions) into the cache; reuse
    after. ``length`` defaults to the card's window. ``precision="int8"``: the fp32 export
    quantised by :func:`quantize_int8`, also once (keyed as well by onnxruntime's version).
    An entry whose data file is cut short or missing is made again (:func:`_complete`);
    builders of one entry take turns (:func:`_cached`)."""
    from ..models._pretrained import cache_dir

    card = card_of(model)
    length = int(length or card.window_samples)
    path = cache_dir(cache) / "onnx" / f"{card.name}-{_fingerprint(model, length)}.onnx"
    if precision == "int8":
        import onnxruntime as ort

        tag = hashlib.sha256(
            f"{path.stem}|{ort.__version__}|{INT8_OPS}|{INT8_SCOPE}|{INT8_FORMAT}".encode()
        ).hexdigest()
        qpath = path.with_name(f"{card.name}-{tag[:16]}-int8.onnx")

        def quantise(out):
            fp32 = cached_onnx(model, cache, length)
            log.info("quantising %s to int8 (once) at %s", card.name, qpath)
            quantize_int8(fp32, out)

        return _cached(qpath, quantise)

    def export(out):
        log.info("exporting %s to ONNX (once) at %s", card.name, path)
        export_onnx(model, out, length=length)

    return _cached(path, export)
