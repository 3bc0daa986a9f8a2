import http.server
import threading
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from spoofscope.cli import main
from spoofscope.data import (
    ASVspoof2019LA,
    FolderDataset,
    InTheWild,
    MissingAudioError,
    ProtocolError,
    check_dataset,
    download_asvspoof2019_la,
    open_dataset,
    parse_asvspoof5,
    parse_asvspoof2019,
    parse_asvspoof2021,
    parse_csv,
    read_asv_scores,
    read_protocol,
)


def test_official_2019_la_protocol_counts(la2019_dir):
    train = parse_asvspoof2019(la2019_dir / "ASVspoof2019.LA.cm.train.trn.txt")
    dev = parse_asvspoof2019(la2019_dir / "ASVspoof2019.LA.cm.dev.trl.txt")
    ev = parse_asvspoof2019(la2019_dir / "ASVspoof2019.LA.cm.eval.trl.txt")
    assert (len(train), len(dev), len(ev)) == (25380, 24844, 71237)
    # independent count straight from the text
    raw = (la2019_dir / "ASVspoof2019.LA.cm.eval.trl.txt").read_text().split("\n")
    assert sum(line.endswith("bonafide") for line in raw) == 7355
    assert sum(t.label == 1 for t in ev) == 7355
    attacks = Counter(t.attack for t in ev if t.label == 0)
    assert sorted(attacks) == [f"A{i:02d}" for i in range(7, 20)]
    assert set(attacks.values()) == {4914}
    assert sum(t.label == 1 for t in train) == 2580 and sum(t.label == 1 for t in dev) == 2548
    assert read_protocol(la2019_dir / "ASVspoof2019.LA.cm.dev.trl.txt")[0].utt_id == "LA_D_1047731"


def test_official_asv_scores(la2019_dir):
    tar, non, spf = read_asv_scores(la2019_dir / "ASVspoof2019.LA.asv.eval.gi.trl.scores.txt")
    assert (tar.size, non.size, spf.size) == (5370, 33327, 13 * 4914)


def test_malformed_line_names_file_line_and_content(tmp_path):
    p = tmp_path / "proto.txt"
    p.write_text("LA_0079 LA_T_1 - - bonafide\nLA_0079 LA_T_2 - A01\n")
    with pytest.raises(ProtocolError) as e:
        parse_asvspoof2019(p)
    msg = str(e.value)
    assert str(p) in msg and "line 2" in msg and "LA_T_2 - A01" in msg and "5 columns" in msg
    p.write_text("LA_0079 LA_T_1 - - genuine\n")
    with pytest.raises(ProtocolError, match="line 1.*unknown key 'genuine'"):
        parse_asvspoof2019(p)
    p.write_text("LA_0079 LA_T_1 - - bonafide\nLA_0079 LA_T_1 - - bonafide\n")
    with pytest.raises(ProtocolError, match="appears twice"):
        parse_asvspoof2019(p)


def test_2021_and_asvspoof5_and_itw_and_csv(tmp_path):
    la = tmp_path / "la21.txt"
    la.write_text(
        "LA_0009 LA_E_9332881 alaw ita_tx A07 spoof notrim eval\n"
        "LA_0020 LA_E_6866159 nocodec ita_tx bonafide bonafide notrim progress\n"
    )
    df = tmp_path / "df21.txt"
    df.write_text(
        "LA_0023 DF_E_2000011 nocodec asvspoof A14 spoof notrim progress "
        "traditional_vocoder - - - -\n"
    )
    t = parse_asvspoof2021(la)
    assert [(x.utt_id, x.label, x.attack, x.meta["codec"]) for x in t] == [
        ("LA_E_9332881", 0, "A07", "alaw"),
        ("LA_E_6866159", 1, "bonafide", "nocodec"),
    ]
    d = read_protocol(df)
    assert d[0].attack == "A14" and d[0].meta["extra"][0] == "traditional_vocoder"
    a5 = tmp_path / "ASVspoof5.train.tsv"
    a5.write_text(
        "T_4850 T_0000000000 F - - - AC3 A05 spoof -\n"
        "T_1 T_0000000001 M - - - - bonafide bonafide -\n"
    )
    t5 = read_protocol(a5)
    assert parse_asvspoof5(a5)[0].attack == "A05"
    assert [(x.label, x.meta["attack_tag"]) for x in t5] == [(0, "AC3"), (1, "-")]
    bad = tmp_path / "ASVspoof5.bad.tsv"
    bad.write_text("T_4850 T_0000000000 F - - - AC3 A05 maybe -\n")
    with pytest.raises(ProtocolError, match="unknown key 'maybe'"):
        read_protocol(bad)
    # In-the-Wild
    itw = tmp_path / "itw"
    itw.mkdir()
    (itw / "meta.csv").write_text(
        "file,speaker,label\n0.wav,Alec Guinness,spoof\n1.wav,Alec Guinness,bona-fide\n"
    )
    for i in range(2):
        sf.write(itw / f"{i}.wav", np.zeros(1600, np.float32), 16000)
    ds = InTheWild(itw)
    assert ds.labels.tolist() == [0, 1] and ds.trials[1].speaker == "Alec Guinness"
    assert isinstance(open_dataset(itw), type(ds))
    # generic CSV
    c = tmp_path / "list.csv"
    c.write_text("path,label,attack\nitw/0.wav,spoof,tts1\nitw/1.wav,bonafide,\n")
    tc = parse_csv(c)
    assert tc[0].path == tmp_path / "itw/0.wav" and tc[0].attack == "tts1" and tc[1].label == 1
    c.write_text("path,label\nitw/0.wav\n")
    with pytest.raises(ProtocolError, match="line 2"):
        parse_csv(c)
    c.write_text("file,label\nx.wav,spoof\n")  # In-the-Wild-like but missing speaker
    with pytest.raises(ProtocolError, match="speaker"):
        read_protocol(c)


def test_folder_dataset(tmp_path):
    for sub in ("bonafide", "spoof/tts", "spoof/vc"):
        (tmp_path / sub).mkdir(parents=True)
    sf.write(tmp_path / "bonafide/a.wav", np.full(800, 0.1, np.float32), 16000)
    sf.write(tmp_path / "spoof/tts/b.flac", np.full(800, -0.1, np.float32), 16000)
    sf.write(tmp_path / "spoof/vc/c.wav", np.zeros(800, np.float32), 16000)
    ds = FolderDataset(tmp_path, transform=None)
    assert ds.labels.tolist() == [1, 0, 0]
    assert [t.attack for t in ds.trials] == ["-", "tts", "vc"]
    x, y, _ = ds[0]
    assert y == 1 and len(x) == 800 and abs(x.mean() - 0.1) < 1e-3


def _write_la_tree(root: Path, n_per_split=3, drop=()):
    proto_dir = root / "LA" / "ASVspoof2019_LA_cm_protocols"
    proto_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, suffix, letter in (
        ("train", "train.trn", "T"),
        ("dev", "dev.trl", "D"),
        ("eval", "eval.trl", "E"),
    ):
        flac = root / "LA" / f"ASVspoof2019_LA_{split}" / "flac"
        flac.mkdir(parents=True)
        lines = []
        for i in range(n_per_split):
            utt = f"LA_{letter}_{i:07d}"
            key = "bonafide" if i == 0 else "spoof"
            attack = "-" if i == 0 else ("A01" if split != "eval" else "A07")
            lines.append(f"LA_0001 {utt} - {attack} {key}")
            if utt not in drop:
                sf.write(
                    flac / f"{utt}.flac",
                    (rng.standard_normal(4000) * 0.1).astype(np.float32),
                    16000,
                )
        (proto_dir / f"ASVspoof2019.LA.cm.{suffix}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_la_dataset_is_lazy_and_reads_items(tmp_path, monkeypatch):
    root = _write_la_tree(tmp_path / "corpus")
    import spoofscope.data.datasets as D

    calls = []
    real = D.load_audio
    monkeypatch.setattr(D, "load_audio", lambda *a, **k: calls.append(a) or real(*a, **k))
    ds = ASVspoof2019LA(root, "eval")
    assert len(ds) == 3 and calls == []  # listing read no audio
    x, y, utt = ds[1]
    assert len(calls) == 1 and x.shape == (64600,) and y == 0 and utt == "LA_E_0000001"
    raw, _ = sf.read(root / "LA/ASVspoof2019_LA_eval/flac/LA_E_0000001.flac", dtype="float32")
    np.testing.assert_allclose(x[:4000], raw, atol=1e-4)  # official tiling of a short file
    np.testing.assert_allclose(x[4000:8000], raw, atol=1e-4)
    assert ds.attacks() == ["A07"]


def test_missing_audio_is_one_error_with_count_and_ids(tmp_path):
    root = _write_la_tree(
        tmp_path / "c", n_per_split=8, drop=("LA_D_0000002", "LA_D_0000005", "LA_D_0000007")
    )
    with pytest.raises(MissingAudioError) as e:
        ASVspoof2019LA(root, "dev")
    msg = str(e.value)
    assert "3 of 8" in msg and "LA_D_0000002" in msg and "LA_D_0000007" in msg
    rep = check_dataset(root)
    assert (
        rep["splits"]["dev"]["missing_files"] == 3 and rep["splits"]["train"]["missing_files"] == 0
    )


def test_data_check_cli(tmp_path, capsys):
    root = _write_la_tree(tmp_path / "c")
    assert main(["data", "check", str(root)]) == 0
    out = capsys.readouterr().out
    assert "eval" in out and "3 trials" in out and "all audio present" in out
    assert main(["data", "check", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert "not a dataset this toolkit knows" in err and "asvspoof2019" in err


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    payload = b""
    ranges: list = []

    def do_GET(self):  # noqa: N802
        data = self.payload
        rng = self.headers.get("Range")
        type(self).ranges.append(rng)
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])

    def log_message(self, *a):
        pass


def test_download_resumes_checks_and_unpacks(tmp_path):
    src = _write_la_tree(tmp_path / "src")
    archive = tmp_path / "LA.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for p in sorted((src / "LA").rglob("*")):
            z.write(p, p.relative_to(src).as_posix())
    payload = archive.read_bytes()
    _RangeHandler.payload, _RangeHandler.ranges = payload, []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        dest = tmp_path / "dest"
        dest.mkdir()
        half = len(payload) // 2
        (dest / "LA.zip.part").write_bytes(payload[:half])  # an interrupted earlier try
        url = f"http://127.0.0.1:{srv.server_address[1]}/LA.zip"
        rep = download_asvspoof2019_la(dest, url=url, progress=False)
    finally:
        srv.shutdown()
    assert _RangeHandler.ranges == [f"bytes={half}-"]
    assert rep["splits"]["eval"]["trials"] == 3 and rep["splits"]["eval"]["missing_files"] == 0
    assert (dest / "LA/ASVspoof2019_LA_dev/flac/LA_D_0000001.flac").is_file()
    assert not (dest / "LA.zip").exists()
    assert len(ASVspoof2019LA(dest, "train")) == 3


def test_download_rejects_a_corrupt_archive(tmp_path, capsys):
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "LA.zip").write_bytes(b"PK\x03\x04 this is not a zip")
    assert main(["data", "download", "asvspoof2019-la", str(dest), "--quiet"]) == 2
    assert "not a valid zip archive" in capsys.readouterr().err


def test_open_dataset_asvspoof5_and_2021_roots(tmp_path):
    r5 = tmp_path / "a5"
    (r5 / "ASVspoof5_protocols").mkdir(parents=True)
    for split, (name, audio) in {
        "train": ("ASVspoof5.train.tsv", "flac_T"),
        "dev": ("ASVspoof5.dev.track_1.tsv", "flac_D"),
    }.items():
        (r5 / audio).mkdir()
        utt = f"{split[0].upper()}_0000000001"
        (r5 / "ASVspoof5_protocols" / name).write_text(f"S1 {utt} F - - - AC3 A05 spoof -\n")
        sf.write(r5 / audio / f"{utt}.flac", np.zeros(1600, np.float32), 16000)
    ds = open_dataset(r5, "dev")
    assert len(ds) == 1 and ds.trials[0].attack == "A05" and ds[0][1] == 0
    with pytest.raises(MissingAudioError):
        (r5 / "ASVspoof5_protocols" / "ASVspoof5.eval.track_1.tsv").write_text(
            "S1 E_1 F - - - AC3 A05 spoof -\n"
        )
        open_dataset(r5, "eval")
    r21 = tmp_path / "a21"
    (r21 / "keys/LA/CM").mkdir(parents=True)
    (r21 / "ASVspoof2021_LA_eval/flac").mkdir(parents=True)
    (r21 / "keys/LA/CM/trial_metadata.txt").write_text(
        "LA_0009 LA_E_1 alaw ita_tx A07 spoof notrim eval\n"
    )
    sf.write(r21 / "ASVspoof2021_LA_eval/flac/LA_E_1.flac", np.zeros(1600, np.float32), 16000)
    assert open_dataset(r21, "eval").trials[0].meta["codec"] == "alaw"
    with pytest.raises(ValueError, match="only an eval split"):
        open_dataset(r21, "train")
