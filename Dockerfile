# Heshi gateway image: multi-stage, non-root, no compilers in the final image.
#   docker build -t heshi:latest .
#   docker run -p 8000:8000 -v ./heshi.yaml:/etc/heshi/heshi.yaml:ro heshi:latest
# The embedded engine's wheel (xllamacpp) is a binary wheel: nothing is compiled here.

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
# the build stage may use pip's caches and build tools; none of it reaches the final image
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m venv /opt/heshi \
 && /opt/heshi/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/heshi/bin/pip install --no-cache-dir ".[postgres]"

FROM python:3.11-slim-bookworm
# libgomp1: the OpenMP runtime the embedded engine's wheel links against (a library, not
# a compiler)
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --gid 0 --home-dir /var/lib/heshi --create-home heshi \
 && mkdir -p /etc/heshi && chown 10001:0 /var/lib/heshi && chmod g+rwX /var/lib/heshi
COPY --from=build /opt/heshi /opt/heshi
ENV PATH=/opt/heshi/bin:$PATH \
    HESHI_HOME=/var/lib/heshi \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001
WORKDIR /var/lib/heshi
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
ENTRYPOINT ["heshi"]
CMD ["serve", "--config", "/etc/heshi/heshi.yaml", "--host", "0.0.0.0", "--port", "8000"]
