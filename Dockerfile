# rollout-bot: a small, non-root image. Build: docker build -t rollout-bot .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY bot ./bot
COPY handlers ./handlers
RUN python -m venv /opt/rollout-bot \
 && /opt/rollout-bot/bin/pip install --no-cache-dir -c constraints.txt .

FROM python:3.11-slim
COPY --from=build /opt/rollout-bot /opt/rollout-bot
RUN useradd --system --uid 10001 --no-create-home rollout-bot
USER 10001
ENV PATH=/opt/rollout-bot/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    ROLLOUT_BOT_HTTP_HOST=0.0.0.0
EXPOSE 3000
# Socket Mode by default; pass `serve --http --port 3000` for HTTP mode.
ENTRYPOINT ["rollout-bot"]
CMD ["serve"]
