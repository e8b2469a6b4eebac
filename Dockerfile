FROM python:3.11-slim
# Not root: the services need to write only the blob store and their state directory.
RUN useradd --create-home --uid 10001 anchorline \
 && mkdir -p /blobs /var/lib/anchorline \
 && chown anchorline:anchorline /blobs /var/lib/anchorline
WORKDIR /app
COPY pyproject.toml README.md ./
COPY anchorline anchorline
COPY services services
COPY schemas schemas
COPY contracts contracts
RUN pip install --no-cache-dir -e .
ENV ANCHORLINE_STATE_DIR=/var/lib/anchorline \
    ANCHORLINE_BLOB_DIR=/blobs \
    HEALTH_URL=http://127.0.0.1:8000/healthz
USER anchorline
# The gateway's /healthz by default; a worker sets HEALTH_URL to its metrics port (compose.yaml).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['HEALTH_URL'], timeout=4)"]
CMD ["anchorline", "--help"]
