# spoofscope detection service, CPU only.
#   docker build -t spoofscope .                       # weights mounted at run time
#   docker build --build-arg FETCH_WEIGHTS=1 -t spoofscope .      # weights fetched and verified
#   docker build --build-arg WEIGHTS_URL=https://mirror.example/AASIST.pth -t spoofscope .
#   docker run -p 8000:8000 -v $PWD/models:/models:ro spoofscope
FROM python:3.11-slim

ARG FETCH_WEIGHTS=""
ARG WEIGHTS_URL=""
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 SPOOFSCOPE_CACHE=/home/app/.cache/spoofscope

RUN useradd --create-home --uid 10001 app
WORKDIR /opt/spoofscope
COPY pyproject.toml README.md ./
COPY src ./src
# the CPU build of torch first (the default index would pull a multi-GB CUDA build)
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0" \
 && pip install ".[serve,postgres]"

# FETCH_WEIGHTS=1: the published AASIST weights through spoofscope's own verified download
# (sha256 from the model card), from the card's URL or the mirror WEIGHTS_URL
RUN mkdir -p /models && if [ -n "$FETCH_WEIGHTS$WEIGHTS_URL" ]; then \
      SPOOFSCOPE_CACHE=/models spoofscope models fetch aasist ${WEIGHTS_URL:+--url "$WEIGHTS_URL"}; \
    fi && chown -R app /models

USER app
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"
CMD ["spoofscope", "serve", "--host", "0.0.0.0", "--port", "8000", "--model", "aasist", "--weights", "/models/AASIST.pth", "--audit-db", "/home/app/audit.sqlite"]
