"""The Slack Web API client the bot talks through, with its retries and metrics."""

from __future__ import annotations

from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from bot.config import Settings
from bot.observability.metrics import metrics
from bot.observability.slack import InstrumentedWebClient


def slack_client(settings: Settings) -> WebClient:
    """The Web API client: retries connection errors, 5xx and 429 (honouring Retry-After);
    every call, failure and 429 is counted in the metrics."""
    return InstrumentedWebClient(
        metrics=metrics(),
        token=settings.slack_bot_token.get_secret_value(),
        base_url=settings.slack_api_url,
        timeout=10,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=2),
            RateLimitErrorRetryHandler(max_retry_count=5),
            ServerErrorRetryHandler(max_retry_count=2),
        ],
    )
