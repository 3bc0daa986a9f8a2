import json
import subprocess
import sys

import numpy as np
import pytest

from spoofscope.cli import main


def _write_set(tmp_path, npz, s, four_columns=True):
    bona, spoof = npz[f"{s}_bona"], npz[f"{s}_spoof"]
    attacks = npz[f"{s}_spoof_attack"]
    proto, scores = [], []
    for i, v in enumerate(bona):
        proto.append(f"LA_0001 B{i:05d} - - bonafide")
        scores.append(
            f"B{i:05d} - bonafide {float(v)!r}" if four_columns else f"B{i:05d} {float(v)!r}"
        )
    for i, (v, a) in enumerate(zip(spoof, attacks, strict=True)):
        proto.append(f"LA_0002 S{i:05d} - {a} spoof")
        scores.append(
            f"S{i:05d} {a} spoof {float(v)!r}" if four_columns else f"S{i:05d} {float(v)!r}"
        )
    # the ASV score file in the official layout
    asv = [f"bonafide target {float(v)!r}" for v in npz[f"{s}_tar"]]
    asv += [f"bonafide nontarget {float(v)!r}" for v in npz[f"{s}_non"]]
    asv += [f"A07 spoof {float(v)!r}" for v in npz[f"{s}_spoof_asv"]]
    # shuffle the score lines: order must not matter
    order = np.random.default_rng(0).permutation(len(scores))
    (tmp_path / "protocol.txt").write_text("\n".join(proto) + "\n")
    (tmp_path / "scores.txt").write_text("\n".join(scores[i] for i in order) + "\n")
    (tmp_path / "asv.txt").write_text("\n".join(asv) + "\n")
    return tmp_path / "scores.txt", tmp_path / "protocol.txt", tmp_path / "asv.txt"


@pytest.mark.parametrize("s,four", [("easy", True), ("ties", False)])
def test_evaluate_json_matches_official_values(tmp_path, capsys, metrics_golden, s, four):
    npz, js = metrics_golden
    g = js["sets"][s]
    sc, pr, asv = _write_set(tmp_path, npz, s, four)
    rc = main(
        ["evaluate", "--scores", str(sc), "--protocol", str(pr), "--asv-scores", str(asv), "--json"]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert abs(out["eer_percent"] - g["eer_cm_percent"]) < 1e-9
    assert abs(out["eer_threshold"] - g["eer_cm_threshold"]) < 1e-9
    assert abs(out["min_tdcf"] - g["min_tDCF"]) < 1e-9
    assert out["n_bonafide"] == 2000 and out["n_spoof"] == 6000
    for a, v in g["eer_cm_per_attack"].items():
        assert abs(out["per_attack_eer_percent"][a] - 100 * v) < 1e-9


def test_evaluate_table_plot_and_sign_flip(tmp_path, capsys, metrics_golden):
    npz, js = metrics_golden
    sc, pr, _ = _write_set(tmp_path, npz, "hard")
    png = tmp_path / "det.png"
    assert (
        main(["evaluate", "--scores", str(sc), "--protocol", str(pr), "--det-plot", str(png)]) == 0
    )
    out = capsys.readouterr().out
    assert "32.5417 %" in out and "A19" in out and "n/a" in out
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    assert w >= 400 and h >= 400
    # negate every score: with --lower-is-bonafide the EER is unchanged
    neg = tmp_path / "neg.txt"
    neg.write_text(
        "".join(
            " ".join(c[:-1] + [repr(-float(c[-1]))]) + "\n"
            for c in (line.split() for line in sc.read_text().splitlines())
        )
    )
    assert (
        main(
            [
                "evaluate",
                "--scores",
                str(neg),
                "--protocol",
                str(pr),
                "--json",
                "--lower-is-bonafide",
            ]
        )
        == 0
    )
    assert abs(json.loads(capsys.readouterr().out)["eer_percent"] - 32.541666666666664) < 1e-9


def _run_err(capsys, argv):
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    return err


def test_evaluate_errors(tmp_path, capsys):
    pr = tmp_path / "p.txt"
    pr.write_text(
        "".join(
            f"LA_1 U{i} - {'-' if i < 3 else 'A07'} {'bonafide' if i < 3 else 'spoof'}\n"
            for i in range(10)
        )
    )
    sc = tmp_path / "s.txt"
    base = [f"U{i} {i * 0.1}" for i in range(10)]

    def run(lines):
        sc.write_text("\n".join(lines) + "\n")
        return _run_err(capsys, ["evaluate", "--scores", str(sc), "--protocol", str(pr)])

    err = run(base + ["X1 0.3", "X2 0.5"])
    assert "2 of 12 scored ids are not in" in err and "X1, X2" in err
    err = run(base[:7])
    assert "3 of 10 trials" in err and "U7, U8, U9" in err
    err = run(base + ["U4 0.9"])
    assert "1 utterance ids appear more than once" in err and "U4" in err
    err = run(base[:9] + ["U9 abc"])
    assert "not finite numbers" in err and "U9" in err
    err = run(base[:9] + ["U9 1.0 2.0"])
    assert "line 10" in err
    four = [
        f"U{i} {'-' if i < 3 else 'A07'} {'bonafide' if i < 3 else 'spoof'} {i}" for i in range(10)
    ]
    four[5] = "U5 A07 bonafide 5"
    err = run(four)
    assert "1 trials carry a KEY that disagrees" in err and "U5" in err
    err = _run_err(
        capsys, ["evaluate", "--scores", str(tmp_path / "none.txt"), "--protocol", str(pr)]
    )
    assert "not found" in err


def test_console_script_runs():
    r = subprocess.run(
        [sys.executable, "-m", "spoofscope", "evaluate", "--help"], capture_output=True, text=True
    )
    assert r.returncode == 0 and "--lower-is-bonafide" in r.stdout
