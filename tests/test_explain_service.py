"""``POST /v1/explain`` and the web page's relevance overlay, on the band-and-span model of
tests/_bandspan.py: the API gives the library's explanation, under the service's limits (a
cap on passes, the compute deadline), with one audit row per request; headless Chromium draws
the API's tiles (read back from the canvas's pixels)."""

import io
import json
import sqlite3

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")
from _bandspan import SR, detector, two_second_mix  # noqa: E402
from _server import LocalServer, chromium_path, launch_chromium  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from spoofscope.serve import ServiceSettings, create_app  # noqa: E402
from spoofscope.serve.explain_routes import MAX_PASSES  # noqa: E402


def _wav(x) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.asarray(x, np.float32), SR, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def test_explain_api_gives_the_librarys_explanation_with_one_audit_row(tmp_path):
    x = two_second_mix()
    det = detector(kind="official")
    want = det.explain(x)
    db = tmp_path / "audit.sqlite"
    with TestClient(create_app(det, ServiceSettings(audit_db=str(db)))) as c:
        r = c.post("/v1/explain", files={"file": ("a.wav", _wav(x), "audio/wav")})
        assert r.status_code == 200, r.text
        d = r.json()
        seg = c.post(
            "/v1/explain?start_s=0.5&end_s=1.5&method=integrated-gradients",
            files={"file": ("a.wav", _wav(x), "audio/wav")},
        ).json()
        over = c.post(
            f"/v1/explain?budget={MAX_PASSES + 1}", files={"file": ("a.wav", _wav(x), "x")}
        )
        bad = c.post("/v1/explain?start_s=5", files={"file": ("a.wav", _wav(x), "x")})
        quiet = c.post("/v1/explain", files={"file": ("q.wav", _wav(np.zeros(2 * SR)), "x")})
    assert d["path"] == "a.wav" and d["label"] == "spoof" and d["method"] == "occlusion"
    assert [t["relevance"] for t in d["tiles"]] == pytest.approx(
        [t["relevance"] for t in want.tiles], abs=1e-6
    )
    assert d["summary"] == want.summary and "not proof" in d["note"]
    assert d["passes"] <= MAX_PASSES
    assert (seg["start_s"], seg["end_s"], seg["method"]) == (0.5, 1.5, "integrated-gradients")
    assert all(0.5 <= t["start_s"] < t["end_s"] <= 1.5 for t in seg["tiles"])
    assert over.status_code == 422 and over.json()["error"]["code"] == "budget_too_large"
    assert bad.status_code == 422 and "not within the recording" in bad.json()["error"]["message"]
    assert quiet.status_code == 200 and quiet.json()["tiles"] == []
    assert "no explanation" in quiet.json()["reason"]
    con = sqlite3.connect(db)
    rows = con.execute("SELECT request_id, label, score FROM decisions").fetchall()
    assert [r[1] for r in rows] == ["spoof", "spoof", "no_speech"]  # one per answered request
    assert rows[0][0] == d["request_id"] and rows[0][2] == pytest.approx(d["score"])
    refused = con.execute("SELECT endpoint, status FROM rejections").fetchall()
    assert sorted(refused) == [("/v1/explain", 422), ("/v1/explain", 422)]


def test_explain_stops_at_the_request_deadline():
    x = np.tile(two_second_mix(), 30)  # one minute: many windows to score again
    det = detector(hop_s=1.0)
    with TestClient(create_app(det, ServiceSettings(request_timeout_s=0.05))) as c:
        r = c.post("/v1/explain", files={"file": ("long.wav", _wav(x), "x")})
    assert r.status_code == 504 and r.json()["error"]["code"] == "deadline_exceeded"


@pytest.mark.skipif(chromium_path() is None, reason="Debian chromium is not installed")
def test_web_page_draws_the_apis_tiles(tmp_path):
    pw = pytest.importorskip("playwright.sync_api")
    import httpx

    x = two_second_mix()
    (tmp_path / "a.wav").write_bytes(_wav(x))
    app = create_app(detector(kind="official"), ServiceSettings())
    with LocalServer(app) as srv:
        api = httpx.post(
            srv.url + "/v1/explain", files={"file": ("a.wav", _wav(x), "x")}, timeout=120
        ).json()
        with pw.sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_page()
            page.goto(srv.url + "/")
            page.set_input_files("#file", str(tmp_path / "a.wav"))
            page.wait_for_selector("#verdict[data-label]", timeout=60000)
            page.click("#explain")
            page.wait_for_selector("#relevance[data-tiles]", timeout=120000)
            drawn = json.loads(page.get_attribute("#relevance", "data-tiles"))
            size = page.evaluate("[$('relevance').width, $('relevance').height]")
            pixels = page.evaluate(
                """(pts) => { const g = $('relevance').getContext('2d');
                   return pts.map(([x, y]) => Array.from(g.getImageData(x, y, 1, 1).data)); }""",
                [[int(t["x"] + t["w"] / 2), int(t["y"] + t["h"] / 2)] for t in drawn],
            )
            summary = page.inner_text("#why-summary")
            # a segment: click its button, then "Why this segment?"
            page.click("#where button.seg >> nth=0")
            seg = page.eval_on_selector(
                "#where button.seg", "b => [+b.dataset.start_s, +b.dataset.end_s]"
            )
            page.click("#explain-seg")
            page.wait_for_function(
                f"JSON.parse($('relevance').dataset.range || '[0,0]')[0] === {seg[0]} && "
                f"JSON.parse($('relevance').dataset.range)[1] === {seg[1]}",
                timeout=120000,
            )
            seg_tiles = json.loads(page.get_attribute("#relevance", "data-tiles"))
            browser.close()
    w, h = size
    assert len(drawn) == len(api["tiles"]) == 64
    peak = max(abs(t["relevance"]) for t in api["tiles"])
    for t, a, px in zip(drawn, api["tiles"], pixels, strict=True):
        for k in ("start_s", "end_s", "f_lo_hz", "f_hi_hz", "relevance"):
            assert t[k] == a[k]
        assert t["x"] == pytest.approx(w * a["start_s"] / 2.0)
        assert t["y"] == pytest.approx(h * (1 - a["f_hi_hz"] / 8000))
        assert t["alpha"] == pytest.approx(0.85 * abs(a["relevance"]) / peak)
        r, g, b, _ = px  # red (blue) over grey: r - g (b - g) = 255 x opacity
        seen = (r - g if a["relevance"] >= 0 else b - g) / 255
        assert seen == pytest.approx(t["alpha"], abs=0.02)
    assert api["summary"] in summary
    assert seg_tiles and all(
        seg[0] <= t["start_s"] < t["end_s"] <= seg[1] + 1e-3 for t in seg_tiles
    )


def test_explain_api_spends_at_most_the_asked_budget():
    """The request's budget reaches the computation: the windows through the network (counted
    by a hook on the model) stay within it, and the answer is the library's at that budget."""
    x = two_second_mix()
    det = detector(kind="official")
    want = det.explain(x, budget=20)
    seen = []
    det.model.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    with TestClient(create_app(det, ServiceSettings())) as c:
        n0 = sum(seen)
        r = c.post("/v1/explain?budget=20", files={"file": ("a.wav", _wav(x), "audio/wav")})
    assert r.status_code == 200, r.text
    d = r.json()
    # the verdict's own window, then the explanation's passes: within the budget
    assert sum(seen) - n0 == 1 + d["passes"] and d["passes"] <= 20
    assert d["tile_s"] == want.tile_s == 1.0
    assert [t["relevance"] for t in d["tiles"]] == pytest.approx(
        [t["relevance"] for t in want.tiles], abs=1e-6
    )
