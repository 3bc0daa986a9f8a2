"""Archive scoring on a real local Ray cluster (`ray start --head` plus a second node process on
this machine, stopped afterwards): results equal `detect --json`; reruns resume without
duplicates; a killed actor loses no file; a corrupt file is an error row."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

ray = pytest.importorskip("ray")
pytest.importorskip("pyarrow")

from _server import free_port  # noqa: E402

import spoofscope  # noqa: E402
from spoofscope.infer import DetectionResult  # noqa: E402
from spoofscope.infer.ray import _row, _ShardWriter, done_paths, read_results  # noqa: E402
from spoofscope.models import save_checkpoint  # noqa: E402

pytestmark = pytest.mark.slow
ENV = dict(
    os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", SPOOFSCOPE_VAD="energy"
)


def _cluster_pids(port: int) -> dict[int, str]:
    """This test's cluster's processes (pid -> command line), never another's on the machine:
    those started for its GCS address (the GCS server, raylets, monitors, agents) and their
    descendants (the workers and actors, children of the raylets)."""
    procs = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        procs[int(d.name)] = (ppid, cmd)
    ours = {
        pid
        for pid, (_, cmd) in procs.items()
        if re.search(rf"(=[\d.]+:{port}|--gcs_server_port={port})\b", cmd)
    }
    grew = True
    while grew:
        kids = {pid for pid, (ppid, _) in procs.items() if ppid in ours} - ours
        ours |= kids
        grew = bool(kids)
    return {pid: procs[pid][1] for pid in ours}


def _stop_cluster(port: int) -> None:
    """Stop this cluster's processes only (``ray stop`` would stop every cluster here)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = _cluster_pids(port)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        for _ in range(100):
            if not _cluster_pids(port):
                return
            time.sleep(0.1)


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
        _stop_cluster(port)


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


def _detect_json_meanwhile(root, ckpt):
    """`_detect_json` in a thread, beside what the test does next: call the answer to wait."""
    got: dict = {}
    t = threading.Thread(target=lambda: got.update(_detect_json(root, ckpt)), daemon=True)
    t.start()

    def answer() -> dict:
        t.join(600)
        assert got and not t.is_alive(), "detect --json gave nothing"
        return got

    return answer


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
    """Two runs fill two shards (a folder, then the whole archive: only the new files are
    scored); a rerun skips all; with one shard deleted (and a broken one beside), a rerun
    scores exactly that shard's files again, once."""
    root, ckpt = archive
    detected = _detect_json_meanwhile(root, ckpt)
    out = tmp_path / "results"
    opts = ["--out", str(out), "--model", str(ckpt), "--engine", "torch", "--quiet"]
    args = ["detect", "--ray", cluster, str(root), "--recursive", *opts]
    p = _spoofscope("detect", "--ray", cluster, str(root / "sub"), *opts)
    assert p.returncode == 0, p.stderr
    want = detected()
    sub = {r["path"] for r in read_results(out)}
    assert sub == {k for k in want if "/sub/" in k} and len(sub) == 4
    p = _spoofscope(*args)
    assert p.returncode == 1, p.stderr  # two inputs are broken
    assert "12 files: 4 already" in p.stdout and "8 scored now (2 errors)" in p.stdout
    _same(read_results(out), want)
    kinds = {r["path"].rsplit("/", 1)[-1]: r["error_kind"] for r in read_results(out)}
    assert kinds["corrupt.wav"] == "invalid" and kinds["empty.flac"] == "empty"
    # a rerun skips everything; a lost shard's files, and only they, are scored again, once
    p = _spoofscope(*args)
    assert "12 already" in p.stdout and "none new" in p.stdout
    shards = sorted(out.glob("part-*.parquet"))
    assert len(shards) == 2
    lost = next(f for f in shards if set(_shard_paths(f)) == sub)
    lost.unlink()
    (out / "part-broken.parquet").write_bytes(b"PAR1 half a shard")
    p = _spoofscope(*args)
    assert "12 files: 8 already" in p.stdout and "4 scored now" in p.stdout
    assert "part-broken.parquet is not a readable shard" in p.stderr
    new = set(sorted(out.glob("part-*.parquet"))) - set(shards) - {out / "part-broken.parquet"}
    assert len(new) == 1 and sorted(_shard_paths(new.pop())) == sorted(sub)
    _same(read_results(out), want)


def _shard_paths(f):
    import pyarrow.parquet as pq

    return pq.read_table(f, columns=["path"]).column("path").to_pylist()


def test_a_retried_batch_is_written_once(tmp_path):
    """The shard writer on its own: a batch that comes back twice (Ray retried it after its
    actor died) is written once; rows are flushed into whole shards."""
    w = _ShardWriter(tmp_path, rows_per_shard=3)
    batch = [DetectionResult(path=f"f{k}.wav", model="m", score=float(k)) for k in range(4)]
    for r in [*batch, *batch[2:], *batch]:  # the second half retried, then all of it
        w.add(_row(r))
    w.flush()
    rows = read_results(tmp_path)
    assert sorted(r["path"] for r in rows) == [f"f{k}.wav" for k in range(4)]
    assert {r["path"]: r["score"] for r in rows} == {f"f{k}.wav": float(k) for k in range(4)}
    assert len(w.shards) == 2 and done_paths(tmp_path) == {f"f{k}.wav" for k in range(4)}


def _follow(stream, lines: list) -> threading.Thread:
    """Collect a subprocess's text output (tqdm's progress lines end with CR) as it comes."""

    def run():
        buf = ""
        while ch := stream.read(1):
            if ch in "\r\n":
                lines.append(buf)
                buf = ""
            else:
                buf += ch
        lines.append(buf)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_a_killed_actor_loses_no_file(cluster, archive, tmp_path):
    """SIGKILL to one of this cluster's scoring actors after the first batch came back, while
    others are still to come: Ray restarts it and retries its batch, so the same run ends
    normally with every file once, as detect gives it."""
    root, _ = archive
    port = int(cluster.rsplit(":", 1)[1])
    torch.manual_seed(1)
    slow = save_checkpoint(spoofscope.create_model("aasist-l"), tmp_path / "aasist-l.ckpt")
    many = tmp_path / "many"
    many.mkdir()
    for k in range(16):
        src = sorted(root.rglob("c[0-9]*.wav"))[k % 10]  # not corrupt.wav
        (many / f"m{k:02d}.wav").write_bytes(src.read_bytes())
    out = tmp_path / "results"
    args = ["detect", "--ray", cluster, str(many), "--out", str(out), "--model", str(slow),
            "--engine", "torch", "--actors", "2"]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "spoofscope", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    progress: list[str] = []
    follower = _follow(proc.stderr, progress)
    done, killed = 0, None
    for _ in range(6000):
        seen = [int(m.group(1)) for ln in progress if (m := re.search(r"(\d+)/16 ", ln))]
        done = max(seen, default=0)
        actors = [p for p, cmd in _cluster_pids(port).items() if "MapBatches(_Scorer)" in cmd]
        if done >= 4 and actors:  # a batch came back: the actors are scoring the others
            killed = actors[0]
            os.kill(killed, signal.SIGKILL)
            break
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    detected = _detect_json_meanwhile(many, slow)  # what detect gives, while Ray finishes
    try:
        first = proc.stdout.read()
        assert proc.wait(600) == 0, first
    finally:
        if proc.poll() is None:
            proc.kill()
    follower.join(10)
    # two batches or more were left for the two actors: the one killed had one in hand
    assert killed is not None and 4 <= done <= 8, f"no actor killed mid-run ({done} of 16 done)"
    assert "16 files: 0 already" in first and "16 scored now" in first
    _same(read_results(out), detected())
