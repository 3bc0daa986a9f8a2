"""The replicated deployment as far as it runs here (no Docker, no cluster): compose.yaml and the
Kubernetes example parse and start the service with options our CLI accepts; two service
processes behind nginx with the project's own nginx.conf share one PostgreSQL audit trail and
the state of live streams."""

import json
import os
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from spoofscope.cli import build_parser

REPO = Path(__file__).resolve().parents[1]


def _args(argv: list[str], env: dict) -> list[str]:
    """Compose's ${VAR:-default} and Kubernetes' $(VAR) filled in."""
    out = []
    for a in argv:
        a = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: env.get(m.group(1), m.group(2)), a)
        out.append(re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a))
    return out


def test_compose_runs_replicas_proxy_postgres_prometheus():
    c = yaml.safe_load((REPO / "compose.yaml").read_text())
    s = c["services"]
    assert set(s) == {"api", "proxy", "postgres", "prometheus"}
    assert s["api"]["deploy"]["replicas"] == "${REPLICAS:-3}"
    argv = _args(s["api"]["command"], {})
    assert argv[:2] == ["spoofscope", "serve"]
    a = build_parser().parse_args(argv[1:])
    assert a.audit_db == "postgresql://spoofscope:change-me@postgres:5432/audit"
    assert a.host == "0.0.0.0" and a.port == 8000
    assert s["api"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert s["postgres"]["environment"]["POSTGRES_DB"] == "audit"
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in s["proxy"]["volumes"]
    assert "server api:8000;" in (REPO / "deploy/nginx.conf").read_text()
    prom = yaml.safe_load((REPO / "deploy/prometheus.yml").read_text())
    job = prom["scrape_configs"][0]
    assert job["dns_sd_configs"][0] == {
        "names": ["api"],
        "type": "A",
        "port": 8000,
        "refresh_interval": "30s",
    }
    assert {"source_labels": ["__address__"], "target_label": "replica"} in job["relabel_configs"]


def test_kubernetes_example():
    docs = {}
    for f in sorted((REPO / "deploy/k8s").glob("*.yaml")):
        for d in yaml.safe_load_all(f.read_text()):
            docs[d["kind"]] = d
    assert set(docs) == {"Deployment", "Service", "HorizontalPodAutoscaler"}
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    box = pod["containers"][0]
    assert box["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert box["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {"AUDIT_DB_URL": "postgresql://u:p@db/audit", "POD_NAME": "spoofscope-0"}
    a = build_parser().parse_args(_args(box["args"], env)[1:])
    assert a.audit_db == env["AUDIT_DB_URL"] and a.replica == "spoofscope-0"
    assert box["resources"]["requests"]["cpu"]  # the autoscaler's base
    hpa = docs["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == docs["Deployment"]["metadata"]["name"]
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    svc = docs["Service"]["spec"]
    assert svc["selector"] == docs["Deployment"]["spec"]["selector"]["matchLabels"]
    # the pod has time to end its streams and answer what is in flight
    assert pod["terminationGracePeriodSeconds"] >= 10 + 15


def _nginx():
    for p in ("/usr/sbin/nginx", "/usr/bin/nginx"):
        if Path(p).exists():
            return p
    return None


@pytest.mark.skipif(_nginx() is None, reason="nginx is not installed (scripts/setup.sh does)")
def test_two_replicas_behind_nginx_share_sessions_and_audit(tmp_path):
    pytest.importorskip("psycopg")
    from _postgres import PgServer, pg_bin, rows
    from _server import ServeProcess, free_port
    from _server import tone_wav as _wav

    if pg_bin() is None:
        pytest.skip("PostgreSQL is not installed (scripts/setup.sh installs it)")
    import httpx
    import torch
    from websockets.sync.client import connect

    import spoofscope
    from spoofscope.models import save_checkpoint
    from spoofscope.serve.audit import AuditLog

    torch.manual_seed(0)
    ckpt = save_checkpoint(spoofscope.create_model("lfcc-lcnn"), tmp_path / "m.ckpt")
    pg = PgServer().init()
    AuditLog(pg.url).close()
    a = b = proxy = None
    try:
        a, b = (
            ServeProcess(ckpt, "--audit-db", pg.url, "--engine", "torch", "--replica", name)
            for name in "ab"
        )
        port = free_port()
        conf = (REPO / "deploy/nginx.conf").read_text()
        conf = conf.replace(
            "server api:8000;", f"server 127.0.0.1:{a.port}; server 127.0.0.1:{b.port};"
        )
        conf = conf.replace("listen 80;", f"listen 127.0.0.1:{port};")
        conf = conf.replace("http {", f"http {{\n    access_log {tmp_path}/access.log;", 1)
        (tmp_path / "nginx.conf").write_text(conf)
        os.chmod(tmp_path, 0o755)
        proxy = subprocess.Popen(
            [
                _nginx(),
                "-p",
                str(tmp_path),
                "-c",
                str(tmp_path / "nginx.conf"),
                "-e",
                str(tmp_path / "error.log"),
                "-g",
                f"pid {tmp_path}/nginx.pid; daemon off;",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        answers = [
            httpx.post(
                url + "/v1/detect", files={"file": (f"{k}.wav", _wav(1.5, k), "x")}, timeout=120
            )
            for k in range(12)
        ]
        pcm = (np.sin(np.arange(16000 * 5) / 16000 * 2 * np.pi * 200) * 9000).astype("<i2")
        with connect(url.replace("http", "ws") + "/v1/stream") as ws:  # through the proxy
            ws.send(json.dumps({"type": "start", "sample_rate": 16000}))
            started = json.loads(ws.recv(timeout=30))
            ws.send(pcm.tobytes())
            ws.send(json.dumps({"type": "stop"}))
            summary = [json.loads(m) for m in ws][-1]
        states = [httpx.get(url + f"/v1/streams/{started['stream_id']}") for _ in range(6)]
    finally:
        if proxy is not None:
            proxy.terminate()
            proxy.wait(10)
        for s in (a, b):
            if s is not None:
                s.stop()
    try:
        assert [r.status_code for r in answers] == [200] * 12
        assert {r.headers["x-replica"] for r in answers} == {"a", "b"}  # both served
        assert {r.headers["x-replica"] for r in states} == {"a", "b"}
        assert all(r.json()["summary"]["score"] == summary["score"] for r in states)
        assert summary["type"] == "summary" and summary["duration_s"] == pytest.approx(5.0)
        ids = sorted(r for (r,) in rows(pg.url, "SELECT request_id FROM decisions"))
        assert ids == sorted([r.json()["request_id"] for r in answers] + [started["stream_id"]])
    finally:
        pg.close()
