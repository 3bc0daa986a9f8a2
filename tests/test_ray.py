"""Archive scoring on a real local Ray cluster (`ray start --head` plus a second node process on
this machine, stopped afterwards): results equal `detect --json`; reruns resume without
duplicates; a killed actor loses no file; a corrupt file is an error row."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
import torch

ray = pytest.importorskip("ray")
pytest.importorskip("pyarrow")

from _server import free_port  # noqa: E402

import spoofscope  # noqa: E402
from spoofscope.infer.ray import read_results  # noqa: E402
from spoofscope.models import save_checkpoint  # noqa: E402

pytestmark = pytest.mark.slow
ENV = dict(
    os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", SPOOFSCOPE_VAD="energy"
)


@pytest.fixture(scope="module")
def cluster():
    port = free_port()
    common = ["--disable-usage-stats", "--object-store-memory", "200000000"]
    subprocess.run(
        [
            "ray",
            "start",
            "--head",
            "--port",
            str(port),
            "--num-cpus",
            "2",
            "--include-dashboard=false",
            *common,
        ],
        check=True,
        capture_output=True,
        env=ENV,
        timeout=120,
    )
    address = f"127.0.0.1:{port}"
    try:
        subprocess.run(
            ["ray", "start", "--address", address, "--num-cpus", "1", *common],
            check=True,
            capture_output=True,
            env=ENV,
            timeout=120,
        )
        yield address
    finally:
        subprocess.run(["ray", "stop", "--force"], capture_output=True, env=ENV, timeout=120)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("archive")
    rng = np.random.default_rng(0)
    (root / "sub").mkdir()
    for k in range(10):
        sr = 44100 if k == 3 else 16000
        t = np.arange(int(sr * (2 + k % 4))) / sr
        x = 0.3 * np.sin(2 * np.pi * (150 + 40 * k) * t) + 0.03 * rng.standard_normal(t.size)
        folder = root / "sub" if k % 3 == 0 else root
        sf.write(folder / f"c{k:02d}.wav", x.astype(np.float32), sr)
    (root / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt junk that is not audio")
    (root / "empty.flac").write_bytes(b"")
    torch.manual_seed(0)
    ckpt = save_checkpoint(spoofscope.create_model("lfcc-lcnn"), root.parent / "lcnn.ckpt")
    return root, ckpt


def _spoofscope(*args, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "spoofscope", *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=timeout,
    )


def _detect_json(root, ckpt):
    p = _spoofscope(
        "detect",
        str(root),
        "--recursive",
        "--model",
        str(ckpt),
        "--engine",
        "torch",
        "--json",
        "--quiet",
    )
    return {d["path"]: d for d in map(json.loads, p.stdout.splitlines())}


def _same(rows, want):
    assert sorted(r["path"] for r in rows) == sorted(want)  # every file, each once
    for r in rows:
        w = want[r["path"]]
        assert (r["error"] is None) == (w["error"] is None), r["path"]
        if w["error"]:
            assert r["error"] == w["error"]
            continue
        assert r["label"] == w["label"] and r["duration_s"] == pytest.approx(w["duration_s"])
        assert r["score"] == pytest.approx(w["score"], abs=1e-5)
        np.testing.assert_allclose(
            [x["score"] for x in r["windows"]], [x["score"] for x in w["windows"]], atol=1e-5
        )
        assert [g["label"] for g in r["segments"]] == [g["label"] for g in w["segments"]]


def test_ray_results_equal_detect_and_resume(cluster, archive, tmp_path):
    root, ckpt = archive
    want = _detect_json(root, ckpt)
    out = tmp_path / "results"
    args = [
        "detect",
        "--ray",
        cluster,
        str(root),
        "--recursive",
        "--out",
        str(out),
        "--model",
        str(ckpt),
        "--engine",
        "torch",
        "--quiet",
    ]
    p = _spoofscope(*args)
    assert p.returncode == 1, p.stderr  # two inputs are broken
    assert "12 files: 0 already" in p.stdout and "(2 errors)" in p.stdout
    _same(read_results(out), want)
    kinds = {r["path"].rsplit("/", 1)[-1]: r["error_kind"] for r in read_results(out)}
    assert kinds["corrupt.wav"] == "invalid" and kinds["empty.flac"] == "empty"
    # a rerun skips everything; a lost shard's files are scored again, once
    p = _spoofscope(*args)
    assert "12 already" in p.stdout and "none new" in p.stdout
    shards = sorted(out.glob("part-*.parquet"))
    shards[0].unlink()
    (out / "part-broken.parquet").write_bytes(b"PAR1 half a shard")
    p = _spoofscope(*args)
    assert "0 already" in p.stdout  # one shard held all 12
    assert "part-broken.parquet is not a readable shard" in p.stderr
    _same(read_results(out), want)


def test_a_killed_actor_loses_no_file(cluster, archive, tmp_path):
    """SIGKILL to a scoring actor mid-run: Ray restarts it and retries its batch; whatever
    the first run left, a rerun completes it, and every file is there once, as detect gives
    it."""
    root, _ = archive
    torch.manual_seed(1)
    slow = save_checkpoint(spoofscope.create_model("aasist-l"), tmp_path / "aasist-l.ckpt")
    many = tmp_path / "many"
    many.mkdir()
    for k in range(16):
        src = sorted(root.rglob("c*.wav"))[k % 10]
        (many / f"m{k:02d}.wav").write_bytes(src.read_bytes())
    want = _detect_json(many, slow)
    out = tmp_path / "results"
    args = [
        "detect",
        "--ray",
        cluster,
        str(many),
        "--out",
        str(out),
        "--model",
        str(slow),
        "--engine",
        "torch",
        "--quiet",
        "--actors",
        "2",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "spoofscope", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    killed = None
    for _ in range(600):
        pids = subprocess.run(
            ["pgrep", "-f", "MapBatches\\(_Scorer\\)"], capture_output=True, text=True
        ).stdout.split()
        if pids:
            time.sleep(3.0)  # let it score a batch or two
            killed = int(pids[0])
            os.kill(killed, signal.SIGKILL)
            break
        time.sleep(0.1)
    first, err = proc.communicate(timeout=600)
    assert killed is not None, err
    if proc.returncode != 0:  # the run did not survive it: the rerun finishes the job
        p = _spoofscope(*args)
        assert p.returncode == 0, p.stderr
    _same(read_results(out), want)
