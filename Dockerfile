# litegate container image: build in a full Python image, run in distroless (no shell, non-root).
# The runtime is gcr.io/distroless/python3-debian12 (Python 3.11), so the build stage uses the
# same Python minor version and Debian release: compiled wheels match the runtime's ABI.

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gatewaylib ./gatewaylib
COPY twisted ./twisted
# One self-contained tree of the project and its dependencies (twisted/plugins included),
# copied as is into the runtime image.
RUN pip install --no-cache-dir --no-compile --target /app/site-packages .

FROM gcr.io/distroless/python3-debian12:nonroot
COPY --from=build /app/site-packages /app/site-packages
COPY config.example.yaml /etc/litegate/config.yaml
ENV PYTHONPATH=/app/site-packages \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
EXPOSE 8080
# twistd in the foreground with no pidfile; the config path is the one the Helm chart mounts.
ENTRYPOINT ["/usr/bin/python3", "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=", "litegate"]
CMD ["--config", "/etc/litegate/config.yaml"]
