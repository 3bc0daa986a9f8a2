"""The SSL encoders' int8 path: ONNX Runtime dynamic int8 of the transformer layers' matrix
products, built once into the cache, offered only where the card lists it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import spoofscope
from spoofscope.errors import ConfigError
from spoofscope.export import onnx as export
from spoofscope.infer import make_engine
from spoofscope.models._card import replace
from spoofscope.models.ssl import TINY_ENCODER

#: a tiny wav2vec 2.0 encoder with widths that give the int8 GEMMs real work (k = 64)
ENCODER = {**TINY_ENCODER, "hidden_size": 64, "intermediate_size": 128}


def _model(name="antideepfake-w2v-small", precisions=("fp32", "int8")):
    """A tiny seeded model whose card lists ``precisions`` (what the card of the full-size
    model lists is decided by benchmarks/precision.py, not by this tiny one)."""
    torch.manual_seed(0)
    m = spoofscope.create_model(name, encoder_config=ENCODER).eval()
    m.card = replace(m.card, precisions=precisions, int8_engine="onnx")
    return m


def _windows(n, length, seed=0):
    """Windows of different loudness and spectra: a spread of scores to compare against."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / 16000
    out = []
    for i in range(n):
        f0 = 80 + 40 * i
        x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8))
        x = x * (0.05 + 0.1 * i) + rng.standard_normal(length) * 0.02 * (i % 3)
        out.append(x)
    return np.stack(out).astype(np.float32)


def test_int8_scores_stay_within_the_card_bound_of_fp32(tmp_path):
    """int8 moves the logits, but by less than the card's bound and a tenth of the spread of
    the fp32 scores over the inputs (computed here from the fp32 outputs), no decision flips,
    the embeddings keep a cosine above 0.999, and only the transformer layers' products are
    int8."""
    from spoofscope.infer.engines import INT8_BOUND

    m = _model()
    x = _windows(8, 16000)
    fp32 = make_engine(m, "onnx", cache=tmp_path)
    int8 = make_engine(m, "auto", cache=tmp_path, precision="int8")
    assert (int8.name, int8.precision, fp32.precision) == ("onnx", "int8", "fp32")
    (lr, er), (lg, eg) = fp32.embed(x), int8.embed(x)
    with torch.no_grad():
        ref = m(torch.from_numpy(x))[0].numpy()
    assert np.abs(lr - ref).max() < 1e-4  # the fp32 graph is the model
    score = lr[:, 1] - lr[:, 0]
    # the card's bound, and a tenth of the spread of the fp32 scores where that is tighter
    tolerance = min(INT8_BOUND["max_abs_logit_diff"], 0.1 * score.std())
    diff = np.abs(lg - lr)
    assert 0 < diff.max() < tolerance, (diff.max(), tolerance)
    assert ((lg[:, 1] > lg[:, 0]) == (lr[:, 1] > lr[:, 0])).all()
    cos = (er * eg).sum(1) / (np.linalg.norm(er, axis=1) * np.linalg.norm(eg, axis=1))
    assert cos.min() > 0.999
    nodes = onnx.load(str(int8.path)).graph.node
    ints = [n for n in nodes if n.op_type == "MatMulInteger"]
    assert ints and all("/encoder/layers." in n.name for n in ints)
    # the head (proj_fc) and the feature extractor's convolutions stay fp32
    assert any(n.op_type in ("MatMul", "Gemm") and "proj_fc" in n.name for n in nodes)
    assert not any(n.op_type == "ConvInteger" for n in nodes)


def test_int8_graph_is_built_once_into_the_cache(tmp_path, monkeypatch):
    m = _model()
    first = export.cached_onnx(m, tmp_path, precision="int8")
    fp32 = export.cached_onnx(m, tmp_path)
    assert first.is_file() and fp32.is_file() and first != fp32
    calls = []
    monkeypatch.setattr(export, "quantize_int8", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(export, "export_onnx", lambda *a, **k: calls.append(a))
    again = make_engine(m, "onnx", cache=tmp_path, precision="int8")
    assert again.path == first and calls == []  # the second load neither exports nor quantises
    monkeypatch.undo()
    with torch.no_grad():
        m.proj_fc.bias.add_(0.5)  # other weights: another graph
    changed = export.cached_onnx(m, tmp_path, precision="int8")
    assert changed != first and changed.is_file()
    # the same weights quantised otherwise (other ops, only the first layer) or by another
    # onnxruntime: another graph, not the one cached for the quantiser before
    import onnxruntime

    seen = {first, changed}
    for where, name, value in (
        (export, "INT8_OPS", ("MatMul", "Gemm")),
        (export, "INT8_SCOPE", "/encoder/layers.0/"),
        (onnxruntime, "__version__", "0.0.0"),
    ):
        with monkeypatch.context() as patched:
            patched.setattr(where, name, value)
            other = export.cached_onnx(m, tmp_path, precision="int8")
        assert other not in seen and other.is_file(), name
        seen.add(other)
        if name == "INT8_SCOPE":  # built anew: the first layer's products only
            ops = [n for n in onnx.load(str(other)).graph.node if n.op_type == "MatMulInteger"]
            assert ops and all("/encoder/layers.0/" in n.name for n in ops)
    assert not list((tmp_path / "onnx").glob("*.tmp"))


def test_int8_refused_in_one_line_where_the_card_lacks_it():
    """(The command line's exit 2 with that line: test_detector's
    test_reduced_precision_only_where_the_card_lists_it.)"""
    m = _model("ssl-linear", precisions=("fp32",))
    with pytest.raises(ConfigError, match="ssl-linear has no int8 path") as e:
        make_engine(m, precision="int8")
    assert "\n" not in str(e.value) and "--precision fp32" in str(e.value)


def test_int8_of_a_model_without_export_runs_in_pytorch():
    """A card with export: none (xlsr-mamba), or whose int8 was measured in PyTorch: the
    int8 path is PyTorch's (the encoder's feed-forward layers); --engine onnx on a model
    without export says so in one line."""
    m = _model("ssl-aasist")
    m.card = replace(m.card, export="none")
    q = make_engine(m, "auto", precision="int8")
    assert (q.name, q.precision) == ("torch", "int8")
    with pytest.raises(ConfigError, match="cannot be exported to ONNX.*use --engine torch"):
        make_engine(m, "onnx", precision="int8")
    # an exportable model whose int8 bound was measured in PyTorch (xlsr-tcm) stays there
    m.card = replace(m.card, export="fixed", int8_engine="torch")
    assert make_engine(m, "auto", precision="int8").name == "torch"
    assert spoofscope.models.get_card("xlsr-tcm").int8_engine == "torch"
    assert spoofscope.models.get_card("ssl-aasist").int8_engine == "onnx"


def test_large_graphs_keep_their_weights_in_one_file_beside_the_graph(tmp_path, monkeypatch):
    """Over EXTERNAL_BYTES (here lowered to 0 for a tiny model) the weights go to one
    ``<graph>.onnx.data`` file named after the cached graph, fp32 and int8 alike; ONNX Runtime
    gives the same scores from it as PyTorch (fp32) and as the one-file int8 graph."""
    m = _model()
    x = _windows(3, 16000)
    inline = make_engine(m, "onnx", cache=tmp_path / "inline", precision="int8")
    monkeypatch.setattr(export, "EXTERNAL_BYTES", 0)
    cache = tmp_path / "external"
    fp32 = make_engine(m, "onnx", cache=cache)
    data = fp32.path.with_name(fp32.path.name + ".data")
    n_params = sum(p.numel() for p in m.parameters())
    assert data.stat().st_size >= 4 * n_params * 0.9 > fp32.path.stat().st_size
    with torch.no_grad():
        ref = m(torch.from_numpy(x))[0].numpy()
    assert np.abs(fp32(x) - ref).max() < 1e-4
    maps = Path("/proc/self/maps")
    if maps.is_file():  # Linux: ONNX Runtime maps the data file rather than reading it in
        assert str(data.resolve()) in maps.read_text()
    int8 = make_engine(m, "onnx", cache=cache, precision="int8")
    assert int8.path.with_name(int8.path.name + ".data").is_file()
    assert np.abs(int8(x) - inline(x)).max() < 1e-6
    left = sorted(p.name for p in (cache / "onnx").iterdir() if p.suffix != ".lock")
    assert len(left) == 4, left  # two graphs, two data files: no per-tensor files, no temp


def test_gathering_per_tensor_files_into_one_moves_every_byte(tmp_path):
    """torch writes a graph over 2 GB with one file per tensor; ``gather_external`` moves them
    (and inline tensors of at least 1 KiB) into one page-aligned file beside the new graph,
    tensor by tensor. Checked on a hand-built graph: ONNX Runtime's output from the gathered
    graph equals ``x @ W1 + b`` and ``x @ W2`` computed here, the tiny tensor stays inline,
    and the source files are left as they were."""
    from onnx import TensorProto, helper, numpy_helper
    from onnx.external_data_helper import convert_model_to_external_data

    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((300, 40)).astype(np.float32)  # 48 kB: its own file
    w2 = rng.standard_normal((300, 50)).astype(np.float32)  # 60 kB: its own file
    b = rng.standard_normal(40).astype(np.float32)  # 160 B: stays inline
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h"]),
            helper.make_node("Add", ["h", "b"], ["y1"]),
            helper.make_node("MatMul", ["x", "w2"], ["y2"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 300])],
        [
            helper.make_tensor_value_info("y1", TensorProto.FLOAT, [None, 40]),
            helper.make_tensor_value_info("y2", TensorProto.FLOAT, [None, 50]),
        ],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"),
         numpy_helper.from_array(b, "b")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    src = tmp_path / "src"
    src.mkdir()
    convert_model_to_external_data(model, all_tensors_to_one_file=False, size_threshold=1024)
    onnx.save_model(model, str(src / "model.onnx"))
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    assert len(before) == 3  # the graph and one file per large tensor

    dst = tmp_path / "out" / "g.onnx"
    dst.parent.mkdir()
    (dst.parent / "g.onnx.data").write_bytes(b"\xff" * 100_000)  # an old one: replaced
    export.gather_external(src / "model.onnx", dst, "g.onnx.data")
    assert sorted(p.name for p in dst.parent.iterdir()) == ["g.onnx", "g.onnx.data"]
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before
    kept = onnx.load(str(dst), load_external_data=False)
    where = {t.name: {e.key: e.value for e in t.external_data} for t in kept.graph.initializer}
    assert where["b"] == {} and where["w1"]["location"] == where["w2"]["location"] == "g.onnx.data"
    assert all(int(where[n]["offset"]) % 4096 == 0 for n in ("w1", "w2"))
    # w1 from the start, w2 from the page after it: nothing of the old file is left
    w2_at = -(-w1.nbytes // 4096) * 4096
    assert (where["w1"]["offset"], where["w2"]["offset"]) == ("0", str(w2_at))
    assert (dst.parent / "g.onnx.data").stat().st_size == w2_at + w2.nbytes
    x = rng.standard_normal((2, 300)).astype(np.float32)
    y1, y2 = export.ort_session(dst, threads=1).run(None, {"x": x})
    np.testing.assert_allclose(y1, x @ w1 + b, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(y2, x @ w2, rtol=1e-5, atol=1e-4)


def test_int8_weight_against_numbers_worked_out_by_hand():
    """Columns whose largest |w| is 127 have scale 2 * 127 / 254 = 1 exactly, so w / scale
    keeps its exact halves, which go to the even neighbour as in onnxruntime's
    ``quantize_nparray`` (0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -2.5 -> -2); an all-zero column has no
    range and gets scale 1 (not 0, whose division gives NaN) and zero weights; a column whose
    largest |w| is 254 gets scale 2; one scale for all is the largest |w| of all over 127."""
    w = np.array(
        [[127, 0, 1], [0.5, 0, 2], [1.5, 0, -254], [2.5, 0, 3], [-0.5, 0, 0], [-2.5, 0, 5]],
        np.float32,
    )
    q, scale = export.int8_weight(w)
    assert q.dtype == np.int8 and scale.dtype == np.float32
    assert scale.tolist() == [1.0, 1.0, 2.0]
    assert q[:, 0].tolist() == [127, 0, 2, 2, 0, -2]
    assert q[:, 1].tolist() == [0] * 6
    assert q[:, 2].tolist() == [0, 1, -127, 2, 0, 2]  # 0.5, 1, -127, 1.5, 0, 2.5 halved
    q, scale = export.int8_weight(w, per_channel=False)
    assert scale.shape == () and scale == 2.0
    assert q[:, 0].tolist() == [64, 0, 1, 1, 0, -1]  # 63.5, 0.25, 0.75, 1.25, -0.25, -1.25


def _reference_int8(src, dst, per_channel):
    """onnxruntime's own dynamic int8 of the same nodes: what the int8 graph is checked
    against."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    nodes = onnx.load(str(src), load_external_data=False).graph.node
    quantize_dynamic(
        str(src),
        str(dst),
        per_channel=per_channel,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul"],
        nodes_to_quantize=[n.name for n in nodes if export.INT8_SCOPE in n.name],
        extra_options={"MatMulConstBOnly": True},
    )
    return dst


def _optimised_ops(path, tmp_path):
    """The op types of ONNX Runtime's optimised graph of ``path`` (after its fusions)."""
    import collections

    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.optimized_model_filepath = str(tmp_path / f"{path.stem}-optimised.onnx")
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return collections.Counter(n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node)


@pytest.mark.parametrize("external", [True, False], ids=["external", "inline"])
@pytest.mark.parametrize("per_channel", [True, False], ids=["per-channel", "per-tensor"])
def test_int8_graph_equals_onnxruntime_quantize_dynamic(
    tmp_path, monkeypatch, per_channel, external
):
    """The int8 graph is built weight by weight here, not by onnxruntime's quantize_dynamic
    (which loads the whole graph); on the same fp32 graph it has the same int8 weights (bit
    for bit), scales and zero points, the same nodes around each product (one
    DynamicQuantizeLinear per input, shared by the products that read it), which ONNX Runtime
    fuses the same way, and the same logits."""
    from onnx import numpy_helper

    if external:
        monkeypatch.setattr(export, "EXTERNAL_BYTES", 0)
    m = _model()
    src = export.export_onnx(m, tmp_path / "fp32.onnx", length=16000)
    assert (tmp_path / "fp32.onnx.data").is_file() == external
    ref = _reference_int8(src, tmp_path / "ref.onnx", per_channel)
    got = export.quantize_int8(src, tmp_path / "int8.onnx", per_channel=per_channel)
    assert (tmp_path / "int8.onnx.data").is_file() == external

    def tensors(path):
        g = onnx.load(str(path)).graph
        out = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        return {
            k: v for k, v in out.items() if k.endswith(("_quantized", "_scale", "_zero_point"))
        }, g

    (want, g_ref), (have, g_got) = tensors(ref), tensors(got)
    assert want and sorted(have) == sorted(want)
    for name, w in want.items():
        h = have[name]
        assert h.dtype == w.dtype and h.shape == w.shape, name
        if name.endswith("_scale"):
            np.testing.assert_allclose(h, w, rtol=1e-7, atol=0)
        else:
            assert np.array_equal(h, w), name  # the int8 weights and zero points: bit for bit
    weights = [k for k in want if k.endswith("_quantized")]
    for k in weights:  # one scale per output channel (column), or one for all
        scale = want[k.replace("_quantized", "_scale")]
        assert scale.shape == ((want[k].shape[1],) if per_channel else ()), k
    assert all(want[k].dtype == np.int8 and (want[k] != 0).any() for k in weights)

    def count(g, op):
        return sum(n.op_type == op for n in g.node)

    for op in ("DynamicQuantizeLinear", "MatMulInteger", "Cast"):
        assert count(g_got, op) == count(g_ref, op) > 0, op
    # Q, K and V read one input: fewer quantisations of activations than products
    assert count(g_got, "DynamicQuantizeLinear") < count(g_got, "MatMulInteger")
    fused = _optimised_ops(got, tmp_path)
    assert fused["DynamicQuantizeMatMul"] + fused["MatMulIntegerToFloat"] > 0
    # after ONNX Runtime's optimiser the whole graphs agree, op for op: without the value
    # shapes quantize_dynamic infers it fused fewer (no SkipLayerNormalization), which moved
    # full-size AntiDeepfake w2v-small's int8 logits by 2e-3 from quantize_dynamic's
    assert fused == _optimised_ops(ref, tmp_path)

    x = _windows(4, 16000)
    a = export.ort_session(ref, threads=1).run(None, {"waveform": x})
    b = export.ort_session(got, threads=1).run(None, {"waveform": x})
    assert np.abs(a[0] - b[0]).max() < 1e-6 and np.abs(a[1] - b[1]).max() < 1e-6


def _layers_graph(path, n=8, k=512, seed=0):
    """A hand-built graph of ``n`` chained products x @ W_i under INT8_SCOPE, each weight
    (k, k) fp32 (1 MiB at k = 512, 8 MiB at 1448), saved with its weights in one external data
    file. Two products read the input (one activation quantisation for both), the last reuses
    the first weight, and a product outside the scope reads the input and that weight in fp32."""
    from onnx import TensorProto, helper, numpy_helper
    from onnx.external_data_helper import convert_model_to_external_data

    path.parent.mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    ws = [(rng.standard_normal((k, k)) / np.sqrt(k)).astype(np.float32) for _ in range(n)]
    nodes = [helper.make_node("MatMul", ["x", "w0"], ["h0"], "/encoder/layers.0/a/MatMul")]
    nodes.append(helper.make_node("MatMul", ["x", "w1"], ["g0"], "/encoder/layers.0/b/MatMul"))
    nodes.append(helper.make_node("Add", ["h0", "g0"], ["s0"], "/encoder/layers.0/Add"))
    prev = "s0"
    for i in range(2, n):
        nodes.append(
            helper.make_node("MatMul", [prev, f"w{i}"], [f"h{i}"], f"/encoder/layers.{i}/MatMul")
        )
        prev = f"h{i}"
    nodes.append(helper.make_node("MatMul", [prev, "w0"], ["y"], "/encoder/layers.9/MatMul"))
    nodes.append(helper.make_node("MatMul", ["x", "w0"], ["z"], "/head/MatMul"))
    graph = helper.make_graph(
        nodes,
        "layers",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, k])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, [None, k]) for o in ("y", "z")],
        [numpy_helper.from_array(w, f"w{i}") for i, w in enumerate(ws)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    convert_model_to_external_data(model, location=f"{path.name}.data", size_threshold=1024)
    onnx.save_model(model, str(path))
    return path, ws


#: run in a fresh process: how far quantize_int8 raises the peak resident memory (VmHWM, reset
#: through /proc/self/clear_refs) above the resident memory before it
_PEAK_CHILD = """
import sys
import numpy, onnx, onnxruntime
from spoofscope.export.onnx import quantize_int8
def status(key):
    return int(next(ln.split()[1] for ln in open("/proc/self/status") if ln.startswith(key))) << 10
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = status("VmRSS")
quantize_int8(sys.argv[1], sys.argv[2])
print(status("VmHWM") - before)
"""


def test_int8_of_an_external_graph_holds_one_weight_at_a_time(tmp_path, monkeypatch):
    """quantize_dynamic loads every weight of the fp32 graph and peaks at several times them
    (11.9 GB for the 1B encoder's 3.6 GiB; 30 weights' worth for the 8 weights here); the int8
    graph of a graph with external data is made one weight at a time: nothing loads the graph
    with its external data, and a fresh process quantising 8 weights of 8 MiB peaks less than 4
    weights above where it started. The result equals quantize_dynamic's on the same graph,
    but for a weight shared with a product outside the scope, which stays fp32 there."""
    import subprocess
    import sys

    from onnx import numpy_helper

    src, ws = _layers_graph(tmp_path / "fp32.onnx")
    ref = _reference_int8(src, tmp_path / "ref.onnx", per_channel=True)
    x = np.random.default_rng(1).standard_normal((3, 512)).astype(np.float32)
    want = export.ort_session(ref, threads=1).run(None, {"x": x})

    real_load = onnx.load

    def load(f, *a, load_external_data=True, **k):
        if load_external_data:
            raise AssertionError(f"{f}: loaded with all its weights")
        return real_load(f, *a, load_external_data=False, **k)

    monkeypatch.setattr(onnx, "load", load)
    monkeypatch.setattr(onnx, "load_model", load)
    dst = export.quantize_int8(src, tmp_path / "int8.onnx")
    monkeypatch.undo()

    g = onnx.load(str(dst)).graph
    names = {t.name for t in g.initializer}
    assert "w0" in names and not {f"w{i}" for i in range(1, 8)} & names  # kept for /head only
    ops = [n.op_type for n in g.node]
    assert ops.count("MatMulInteger") == 9 and ops.count("DynamicQuantizeLinear") == 8  # x once
    have = export.ort_session(dst, threads=1).run(None, {"x": x})
    np.testing.assert_array_equal(have[0], want[0])
    # the product outside the scope reads the fp32 weight it shares with a quantised one;
    # quantize_dynamic gives it that weight dequantised from int8 (DequantizeLinear) instead
    np.testing.assert_allclose(have[1], x @ ws[0], rtol=1e-5, atol=1e-5)
    assert np.abs(want[1] - x @ ws[0]).max() > 1e-3
    q = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(ref)).graph.initializer}
    for t in g.initializer:
        if t.name.endswith("_quantized"):
            assert np.array_equal(numpy_helper.to_array(t), q[t.name]), t.name

    if not Path("/proc/self/clear_refs").is_file():
        pytest.skip("no /proc/self/clear_refs to reset the peak memory with")
    big, ws = _layers_graph(tmp_path / "big" / "fp32.onnx", k=1448)  # 8 MiB a weight
    out = subprocess.run(
        [sys.executable, "-c", _PEAK_CHILD, str(big), str(big.with_name("int8.onnx"))],
        capture_output=True,
        text=True,
        check=True,
    )
    grew = int(out.stdout.split()[-1])
    assert grew < 4 * ws[0].nbytes, grew / ws[0].nbytes


def test_int8_refuses_a_gemm_with_a_constant_weight_in_the_layers(tmp_path):
    """The transformer layers' linear maps export as MatMul; a Gemm with a constant weight
    there would be left fp32 by a MatMul-only quantiser, so it is refused in one line."""
    from onnx import TensorProto, helper, numpy_helper

    w = np.ones((4, 4), np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["y"], "/encoder/layers.0/fc/Gemm")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
        [numpy_helper.from_array(w, "w")],
    )
    src = tmp_path / "gemm.onnx"
    onnx.save_model(helper.make_model(graph), str(src))
    with pytest.raises(ConfigError, match="Gemm with a constant weight.*--precision fp32") as e:
        export.quantize_int8(src, tmp_path / "int8.onnx")
    assert "\n" not in str(e.value)


def test_an_int8_graph_cached_by_another_quantiser_format_is_made_again(tmp_path, monkeypatch):
    """The int8 cache entry is keyed by INT8_FORMAT (raised when quantize_int8 writes another
    graph for the same fp32 one): after a raise the engine makes a new graph beside the old,
    rather than reusing the one the earlier quantiser wrote."""
    m = _model()
    first = make_engine(m, "onnx", cache=tmp_path, precision="int8").path
    again = make_engine(m, "onnx", cache=tmp_path, precision="int8").path
    assert again == first
    made = []
    real = export.quantize_int8
    monkeypatch.setattr(export, "quantize_int8", lambda *a, **k: made.append(a) or real(*a, **k))
    monkeypatch.setattr(export, "INT8_FORMAT", export.INT8_FORMAT + 1)
    other = make_engine(m, "onnx", cache=tmp_path, precision="int8").path
    assert other != first and other.is_file() and first.is_file() and len(made) == 1


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("damage", ["cut short", "deleted"])
def test_a_cached_graph_whose_data_file_is_damaged_is_made_again(
    tmp_path, monkeypatch, precision, damage
):
    """A cached graph whose external data file was cut short (a full disk, a copy
    interrupted) or deleted is exported again, not handed to ONNX Runtime (which failed on it:
    ``--engine onnx`` with its traceback, ``auto`` falling back to PyTorch for good): the
    engine built after the damage gives the scores the undamaged one gave."""
    monkeypatch.setattr(export, "EXTERNAL_BYTES", 0)
    m = _model()
    x = _windows(2, 16000)
    first = make_engine(m, "onnx", cache=tmp_path, precision=precision)
    want = first(x)
    data = first.path.with_name(first.path.name + ".data")
    del first
    if damage == "deleted":
        data.unlink()
    else:
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    again = make_engine(m, "onnx", cache=tmp_path, precision=precision)
    np.testing.assert_array_equal(again(x), want)
    assert (again.name, data.is_file()) == ("onnx", True)


def test_builders_of_one_cache_entry_take_turns(tmp_path, monkeypatch):
    """Two threads (e.g. two scoring threads needing a graph at a new length) build the same
    cache entry at once: the second waits for the first and uses its files (torch's exporter
    failed on the second: "GLOBALS.in_onnx_export must be False"; processes each wrote the one
    data file under its final name, one deleting the other's). Both get the graph of one
    export, which gives PyTorch's scores, and the cache holds its two files."""
    import threading

    monkeypatch.setattr(export, "EXTERNAL_BYTES", 0)
    m = _model()
    x = _windows(2, 16000)
    real = export._save_external
    both = threading.Barrier(2, timeout=3)
    saved = []

    def save(*a, **k):  # hold a builder here until the other one comes, if it does
        try:
            both.wait()
        except threading.BrokenBarrierError:
            pass
        saved.append(a[2])
        return real(*a, **k)

    monkeypatch.setattr(export, "_save_external", save)
    got, failed = {}, []

    def build(i):
        try:
            got[i] = export.cached_onnx(m, tmp_path)
        except Exception as e:  # noqa: BLE001 - recorded for the assertion
            failed.append(e)

    threads = [threading.Thread(target=build, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failed and got[0] == got[1]
    assert len(saved) == 1  # one export, the other builder used it
    with torch.no_grad():
        ref = m(torch.from_numpy(x))[0].numpy()
    assert (
        np.abs(export.ort_session(got[0], threads=1).run(None, {"waveform": x})[0] - ref).max()
        < 1e-4
    )
    left = sorted(p.name for p in (tmp_path / "onnx").iterdir() if p.suffix != ".lock")
    assert left == [got[0].name, got[0].name + ".data"], left


def test_a_killed_builders_folder_is_removed_by_the_next(tmp_path, monkeypatch):
    """A builder killed mid-export (SIGKILL, out of memory) leaves its folder in the cache,
    for the 2B encoder gigabytes of per-tensor files; the next builder of that entry removes
    it, and leaves other entries' files alone."""
    monkeypatch.setattr(export, "EXTERNAL_BYTES", 0)
    m = _model()
    path = export.cached_onnx(m, tmp_path)
    path.unlink()  # the entry to make again, as if the killed builder had been the first
    stale = path.with_name(f"{path.name}.k1ll3d")
    stale.mkdir()
    (stale / "onnx__MatMul_1").write_bytes(b"\0" * 4096)
    other = path.with_name(f"other-{path.name}.k1ll3d")
    other.mkdir()
    assert export.cached_onnx(m, tmp_path) == path and path.is_file()
    assert not stale.exists() and other.is_dir()


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_a_full_disk_mid_export_is_one_line_and_leaves_no_entry(tmp_path, monkeypatch, precision):
    """The disk fills while the weights are written: one ConfigError naming the cache and
    the fix, nothing of the entry left in the cache (no graph, no data file cut short), and
    the next build, with room again, gives the graph."""
    import errno

    monkeypatch.setattr(export, "EXTERNAL_BYTES", 0)
    m = _model()
    if precision == "int8":
        export.cached_onnx(m, tmp_path)  # the fp32 graph made; the disk fills on the int8's
    names = {p.name for p in (tmp_path / "onnx").glob("*") if p.suffix != ".lock"}
    before = names if precision == "int8" else set()
    real, n = export._to_file, [0]

    def full(*a):
        n[0] += 1
        if n[0] > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*a)

    monkeypatch.setattr(export, "_to_file", full)
    with pytest.raises(ConfigError, match="cache .*No space left.*SPOOFSCOPE_CACHE") as e:
        make_engine(m, "onnx", cache=tmp_path, precision=precision)
    assert "\n" not in str(e.value)
    left = {p.name for p in (tmp_path / "onnx").glob("*") if p.suffix != ".lock"}
    assert left == before, left
    monkeypatch.setattr(export, "_to_file", real)
    assert make_engine(m, "onnx", cache=tmp_path, precision=precision).precision == precision


def test_int8_of_a_graph_listing_its_weights_as_inputs_needs_only_its_input(tmp_path):
    """Older exporters list every initializer among the graph's inputs as well; the int8
    graph drops the quantised weights' inputs with them (the session asked for the fp32
    weights in its feed) and gives the logits of quantize_dynamic's graph."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    ws = [(rng.standard_normal((64, 64)) / 8).astype(np.float32) for _ in range(2)]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w0"], ["h"], "/encoder/layers.0/MatMul"),
         helper.make_node("MatMul", ["h", "w1"], ["y"], "/encoder/layers.1/MatMul")],
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s)
         for n, s in (("x", [None, 64]), ("w0", [64, 64]), ("w1", [64, 64]))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 64])],
        [numpy_helper.from_array(w, f"w{i}") for i, w in enumerate(ws)],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    src = tmp_path / "inputs.onnx"
    onnx.save_model(model, str(src))
    ref = _reference_int8(src, tmp_path / "ref.onnx", per_channel=True)
    got = export.quantize_int8(src, tmp_path / "int8.onnx")
    assert [i.name for i in onnx.load(str(got)).graph.input] == ["x"]
    x = rng.standard_normal((3, 64)).astype(np.float32)
    want = export.ort_session(ref, threads=1).run(None, {"x": x})[0]
    np.testing.assert_array_equal(export.ort_session(got, threads=1).run(None, {"x": x})[0], want)


@pytest.mark.parametrize("external", [True, False], ids=["external", "inline"])
def test_an_export_that_fails_leaves_the_earlier_export_whole(tmp_path, monkeypatch, external):
    """``spoofscope export`` over an earlier export of the same path, interrupted (Ctrl-C)
    while torch writes the graph: the earlier graph and its data file are as they were and
    give the same scores (the data file was deleted first and the graph written in place:
    neither could be loaded any more); nothing else is left beside them."""
    if external:
        monkeypatch.setattr(export, "EXTERNAL_BYTES", 0)
    m = _model()
    x = _windows(2, 16000)
    path = export.export_onnx(m, tmp_path / "m.onnx")
    want = export.ort_session(path, threads=1).run(None, {"waveform": x})[0]
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert ("m.onnx.data" in files) == external

    def interrupted(model, args, f, *a, **k):  # half a graph written, then Ctrl-C
        Path(f).write_bytes(b"\x08\x07half a graph")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch.onnx, "export", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export.export_onnx(m, path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == files
    got = export.ort_session(path, threads=1).run(None, {"waveform": x})[0]
    np.testing.assert_array_equal(got, want)


def test_a_data_file_named_as_its_graph_is_refused(tmp_path, monkeypatch):
    """A data file given the graph's own name would be overwritten by the graph when it is
    saved (a graph that cannot be loaded): refused in one line, for an export and an int8."""
    monkeypatch.setattr(export, "EXTERNAL_BYTES", 0)
    m = _model()
    with pytest.raises(ConfigError, match="would be the graph itself"):
        export.export_onnx(m, tmp_path / "a.onnx", data_file="a.onnx")
    src = export.export_onnx(m, tmp_path / "b.onnx")
    with pytest.raises(ConfigError, match="would be the graph itself"):
        export.quantize_int8(src, tmp_path / "q.onnx", data_file="q.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.onnx", "b.onnx.data"]
