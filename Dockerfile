# rollout-bot: a small, non-root image whose dependencies are installed from requirements.lock
# (exact versions, every file's SHA-256 checked). Build: `make image`.
FROM python:3.11-slim AS build
WORKDIR /src
COPY requirements.lock ./
# --require-hashes: a download that does not match the lock stops the build.
RUN python -m venv /opt/rollout-bot \
 && /opt/rollout-bot/bin/pip install --no-cache-dir --require-hashes --no-deps -r requirements.lock
# The product alone: the development kit and the playground live in tests/, which stays out
# (`rollout-bot playground` here says it runs from a checkout).
COPY bot ./bot
COPY handlers ./handlers
# The project itself is plain source on the path (no build step, so nothing unpinned is fetched).
RUN mkdir -p /opt/rollout-bot/app \
 && cp -r bot handlers /opt/rollout-bot/app/ \
 && printf '%s\n' '#!/opt/rollout-bot/bin/python' 'import sys' 'from bot.__main__ import main' \
      'sys.exit(main())' > /opt/rollout-bot/bin/rollout-bot \
 && chmod 0755 /opt/rollout-bot/bin/rollout-bot \
 && /opt/rollout-bot/bin/python -m compileall -q /opt/rollout-bot/app

FROM python:3.11-slim
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="rollout-bot" \
      org.opencontainers.image.description="Slack chat-ops for Kubernetes Deployment rollouts: approvals, live progress, audit trail" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/rollout-bot /opt/rollout-bot
RUN useradd --system --uid 10001 --no-create-home rollout-bot
USER 10001
ENV PATH=/opt/rollout-bot/bin:$PATH \
    PYTHONPATH=/opt/rollout-bot/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ROLLOUT_BOT_HTTP_HOST=0.0.0.0 \
    ROLLOUT_BOT_LOG_FORMAT=json
# 3000: Slack's requests in HTTP mode; 8080: /healthz, /readyz and /metrics in Socket Mode.
EXPOSE 3000 8080
ENTRYPOINT ["rollout-bot"]
CMD ["serve"]
