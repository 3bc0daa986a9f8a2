"""User errors through the real command line: one line on stderr, exit status 2, no traceback
(a traceback is for bugs, or asked for with --debug)."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

import spoofscope


def _run(args, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "spoofscope", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def _one_line_error(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    d = tmp_path_factory.mktemp("audio")
    sf.write(d / "a.flac", np.random.default_rng(0).standard_normal(32000) * 0.1, 16000)
    return d / "a.flac"


def test_offline_first_run_gives_a_verdict_from_the_packaged_weights(audio, tmp_path):
    # no network (every proxy a closed loopback port) and an empty cache: the packaged official
    # AASIST answers, and nothing is downloaded
    r = _run(
        ["detect", str(audio), "--json"],
        {
            "SPOOFSCOPE_CACHE": str(tmp_path / "empty"),
            "http_proxy": "http://127.0.0.1:9",
            "https_proxy": "http://127.0.0.1:9",
        },
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["error"] is None and out["label"] in ("bonafide", "spoof", "no_speech")
    assert not list((tmp_path / "empty").glob("*.pth"))


def test_offline_first_run_of_a_model_that_downloads(audio, tmp_path):
    """A Hub model, its endpoint a closed loopback port: one line naming the repo and the fix."""
    pytest.importorskip("huggingface_hub")
    from _server import free_port

    r = _run(
        ["detect", str(audio), "--model", "antideepfake-w2v-small"],
        {
            "SPOOFSCOPE_CACHE": str(tmp_path / "empty"),
            "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        },
    )
    line = _one_line_error(r, "wav2vec-small-anti-deepfake", "no connection to 127.0.0.1")
    assert line.count("by hand") == 1 and "--weights" in line
    # a machine with no network at all (a network namespace of its own, where allowed): the
    # Hub's own address, which cannot be looked up there
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        env = {k: v for k, v in os.environ.items() if k != "HF_ENDPOINT"}
        r = subprocess.run(
            [
                "unshare",
                "-n",
                sys.executable,
                "-m",
                "spoofscope",
                "detect",
                str(audio),
                "--model",
                "antideepfake-w2v-small",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            env={**env, "SPOOFSCOPE_CACHE": str(tmp_path / "empty")},
        )
        _one_line_error(r, "wav2vec-small-anti-deepfake", "no connection to huggingface.co")


def test_corrupt_checkpoint(audio, tmp_path):
    (tmp_path / "m.ckpt").write_bytes(b"\x80\x02 this is not a checkpoint")
    r = _run(["detect", str(audio), "--model", str(tmp_path / "m.ckpt")])
    _one_line_error(r, "m.ckpt", "not a readable PyTorch checkpoint")


def test_checkpoint_of_the_wrong_architecture(audio, tmp_path):
    torch.manual_seed(0)
    torch.save(spoofscope.create_model("lfcc-lcnn").state_dict(), tmp_path / "lcnn.pth")
    r = _run(["detect", str(audio), "--model", "rawnet2", "--weights", str(tmp_path / "lcnn.pth")])
    _one_line_error(r, "lcnn.pth", "does not fit rawnet2", "missing key(s)", "unexpected key(s)")
    r = _run(["export", "--model", "aasist", "--weights", str(tmp_path / "lcnn.pth"), "x.onnx"])
    _one_line_error(r, "does not fit aasist")


def test_official_config_missing_a_key(audio, tmp_path, reference_dir):
    """AASIST-L weights with an official config that lacks the AASIST-L sizes (so the defaults,
    i.e. AASIST, apply): the weights do not fit, and the message says which keys."""
    conf = json.loads((reference_dir / "aasist_l_config.json").read_text())
    mc = dict(conf.get("model_config", conf))
    for k in ("gat_dims", "filts"):
        mc.pop(k)
    (tmp_path / "AASIST-L.conf").write_text(json.dumps({"model_config": mc}))
    r = _run(
        [
            "detect",
            str(audio),
            "--model",
            str(reference_dir / "official_AASIST-L.pth"),
            "--config",
            str(tmp_path / "AASIST-L.conf"),
        ]
    )
    _one_line_error(r, "does not fit aasist", "shape mismatch")
    (tmp_path / "bad.conf").write_text(json.dumps({"model_config": {"gat_dim": [1, 2]}}))
    r = _run(
        [
            "detect",
            str(audio),
            "--model",
            str(reference_dir / "official_AASIST-L.pth"),
            "--config",
            str(tmp_path / "bad.conf"),
        ]
    )
    _one_line_error(r, "unknown keys ['gat_dim']")


def test_recipe_errors_and_debug_traceback(tmp_path):
    r = _run(["train", "configs/demo.yaml", "--data", str(tmp_path), "--out", str(tmp_path)])
    _one_line_error(r, "recipe configs/demo.yaml not found")
    from pathlib import Path

    recipe = Path(__file__).resolve().parents[1] / "configs" / "aasist.yaml"
    r = _run(
        [
            "train",
            str(recipe),
            "--data",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
            "loss.sampler=balansed",
        ]
    )
    _one_line_error(r, "loss.sampler: 'balansed' is not one of random, balanced")
    r = _run(
        [
            "--debug",
            "train",
            str(recipe),
            "--data",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
            "epochs=abc",
        ]
    )
    assert r.returncode != 0 and "Traceback" in r.stderr and "ConfigError" in r.stderr


def test_models_lists_the_registry_with_cards(tmp_path):
    r = _run(["models", "--json"], {"SPOOFSCOPE_CACHE": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    rows = {d["name"]: d for d in map(json.loads, r.stdout.splitlines())}
    assert set(spoofscope.list_models()) == set(rows)
    a = rows["aasist"]
    assert a["parameters"] == 297866 and a["window_samples"] == 64600 and a["export"] == "fixed"
    assert a["weights"] == {"official": "AASIST.pth"} and a["weights_status"] == "packaged"
    assert "NAVER Corp." in open(a["notice_file"]).read()
    assert rows["rawnet2"]["weights_status"] == "none"
    # an empty cache: only what ships in the package is "packaged"; the rest must be fetched
    assert {n for n, d in rows.items() if d["weights_status"] == "packaged"} == {
        "aasist",
        "aasist-l",
    }
    assert rows["antideepfake-w2v-small"]["weights_status"] == "available"  # Hub download
    assert rows["xlsr-sls"]["weights_status"] == "manual"  # a Google Drive page
    assert rows["cqcc-xvector"]["export"] == "none"


def test_zoo_weights_published_on_a_page_say_what_to_fetch(audio, tmp_path):
    r = _run(["detect", str(audio), "--model", "xlsr-sls"], {"SPOOFSCOPE_CACHE": str(tmp_path)})
    _one_line_error(
        r, "xlsr-sls:df", "drive.google.com", str(tmp_path / "xlsr-sls-df.pth"), "--weights"
    )
    r = _run(
        ["detect", str(audio), "--model", "xlsr-mamba:df"],
        {"SPOOFSCOPE_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"},
    )
    _one_line_error(r, "AustinXiao/XLSR-Mamba-DF", "by hand")


# ---- an install without an extra: its modules hidden (``sys.modules[name] = None`` makes
# ``import name`` fail as it does where the package is not installed)

#: the modules each extra brings in (pyproject.toml)
EXTRA_MODULES = {
    "serve": ["fastapi", "fastapi_offline", "uvicorn", "prometheus_client", "websockets"],
    "ssl": ["transformers", "huggingface_hub", "safetensors"],
    "ray": ["ray"],
}


def _without(extra, code):
    """``code`` run in a fresh interpreter where ``extra``'s modules are not installed."""
    hide = "".join(f"sys.modules[{m!r}] = None\n" for m in EXTRA_MODULES[extra])
    return subprocess.run(
        [sys.executable, "-c", f"import sys\n{hide}{code}"],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_ssl_model_without_the_ssl_extra_names_it(audio, tmp_path):
    # a zoo model with the user's own weights file: the encoder needs transformers
    torch.save({"w": torch.zeros(1)}, tmp_path / "sd.pt")
    args = ["detect", str(audio), "--model", "xlsr-mamba", "--weights", str(tmp_path / "sd.pt")]
    r = _without("ssl", f"from spoofscope.cli import main\nsys.exit(main({args!r}))")
    _one_line_error(r, "transformers", "pip install 'spoofscope[ssl]'")
    # and from Python, for the hf: classifiers as for the zoo
    for call in ("load_model('hf:someone/classifier')", "create_model('xlsr-mamba')"):
        r = _without("ssl", f"import spoofscope\nspoofscope.{call}")
        last = r.stderr.strip().splitlines()[-1]
        assert last.startswith("ModuleNotFoundError") and "spoofscope[ssl]" in last, r.stderr


def test_ray_from_python_without_the_ray_extra_names_it(audio, tmp_path):
    code = (
        "from spoofscope.infer.ray import score_files\n"
        f"score_files([{str(audio)!r}], {str(tmp_path / 'out')!r}, detector=None)"
    )
    r = _without("ray", code)
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("ModuleNotFoundError") and "spoofscope[ray]" in last, r.stderr


def test_audit_summary_of_a_sqlite_trail_needs_no_serve_extra(tmp_path):
    """Reading a copied audit file is no service: the base install summarises it."""
    from datetime import UTC, datetime

    from spoofscope.serve.audit import AuditLog

    db = tmp_path / "audit.sqlite"
    log = AuditLog(db)
    labels = ["spoof", "bonafide", "spoof", "no_speech"]
    for i, lab in enumerate(labels):
        score = None if lab == "no_speech" else float(i) - 1.5
        result = {"duration_s": 2.0, "score": score, "label": lab, "p_bonafide": None}
        log.record(
            f"r{i}", "0" * 64, result, "aasist", "0", when=datetime(2026, 1, 1, 0, i, tzinfo=UTC)
        )
    log.close()
    args = ["audit", "summary", "--db", str(db), "--json"]
    r = _without("serve", f"from spoofscope.cli import main\nsys.exit(main({args!r}))")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["by_label"] == {"spoof": 2, "bonafide": 1, "no_speech": 1}
    assert s["verdicts"] == 3 and s["abstained"] == 1
    assert s["score"]["mean"] == pytest.approx(np.mean([-1.5, -0.5, 0.5]))
    # the service itself still names its extra
    r = _without("serve", "from spoofscope.cli import main\nsys.exit(main(['serve']))")
    _one_line_error(r, "pip install 'spoofscope[serve]'")


def test_unwritable_cache_still_gives_the_verdict_and_names_the_setting(audio, tmp_path):
    # SPOOFSCOPE_CACHE below a regular file: no ONNX export can be cached there; detect says
    # why in one warning naming the setting, and answers from PyTorch with the same score
    (tmp_path / "file").write_text("")
    args = ["detect", str(audio), "--json", "--vad", "energy"]  # the noise is judged
    bad = _run(args, {"SPOOFSCOPE_CACHE": str(tmp_path / "file/c")})
    ok = _run(args, {"SPOOFSCOPE_CACHE": str(tmp_path / "c")})
    assert bad.returncode == 0 and ok.returncode == 0, bad.stderr + ok.stderr
    warned = [ln for ln in bad.stderr.splitlines() if ln.startswith("WARNING")]
    assert len(warned) == 1 and "set SPOOFSCOPE_CACHE to a writable folder" in warned[0], warned
    assert str(tmp_path / "file/c") in warned[0]
    got, want = json.loads(bad.stdout), json.loads(ok.stdout)
    assert got["label"] == want["label"] and want["label"] in ("bonafide", "spoof")
    assert got["score"] == pytest.approx(want["score"], abs=1e-4)
    assert list((tmp_path / "c" / "onnx").glob("*.onnx"))  # the other run did use ONNX


def test_a_folder_without_audio_is_named(audio, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "nested" / "sub").mkdir(parents=True)
    shutil.copy(audio, tmp_path / "nested" / "sub" / "a.flac")
    (tmp_path / "nested" / "notes.txt").write_text("not audio")
    r = _run(["detect", str(tmp_path / "nested")])
    _one_line_error(r, f"{tmp_path / 'nested'}: no audio files found", "--recursive")
    r = _run(["detect", str(tmp_path / "empty"), "--recursive"])
    line = _one_line_error(r, f"{tmp_path / 'empty'}: no audio files found")
    assert "use --recursive" not in line


def test_sub_modules_are_attributes_of_their_package():
    # the public names load on first use; the sub-modules are found as attributes too, as
    # they were when the packages imported them eagerly
    code = (
        "import importlib, spoofscope, spoofscope.infer\n"
        "card, det = spoofscope.models.get_card('aasist'), spoofscope.infer.detector\n"
        "assert card.name == 'aasist' and card.window_samples == 64600\n"
        "assert det is importlib.import_module('spoofscope.infer.detector')\n"
        "assert spoofscope.metrics.compute_eer([1.0, 2.0], [0.0])[0] == 0.0\n"
        "assert not hasattr(spoofscope, 'nosuch') and not hasattr(spoofscope.infer, 'nosuch')\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
