# spoofscope detection service, CPU only, installed from the wheel users get (the official
# AASIST weights are inside it: nothing to mount or download).
#   docker build -t spoofscope .
#   docker run -p 8000:8000 spoofscope
# tests/test_wheel.py runs these steps in a virtual environment (no Docker engine on CI).
FROM python:3.11-slim AS wheel
WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in README.md LICENSE ./
COPY src ./src
RUN pip install --no-cache-dir build && python -m build --wheel --outdir /dist

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 SPOOFSCOPE_CACHE=/home/app/.cache/spoofscope
RUN useradd --create-home --uid 10001 app
COPY --from=wheel /dist /dist
# the CPU build of torch first (the default index would pull a multi-GB CUDA build), then the
# wheel with the service's extras
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0" \
 && pip install "$(ls /dist/spoofscope-*.whl)[serve,postgres]" \
 && rm -rf /dist

USER app
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"
CMD ["spoofscope", "serve", "--host", "0.0.0.0", "--port", "8000", "--model", "aasist", "--audit-db", "/home/app/audit.sqlite"]
