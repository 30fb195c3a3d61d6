"""Counts every Slack Web API call the bot makes: calls by method, failures by Slack's error
code, and 429s (each one, including those the client then retries after Retry-After)."""

from __future__ import annotations

from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from bot.observability.metrics import Metrics


def _method_of(url: str) -> str:
    """`https://slack.com/api/chat.postMessage?x=1` -> `chat.postMessage`."""
    return url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]


class RateLimitCounter(RetryHandler):
    """Placed first among the retry handlers: sees each answer, counts 429s, never retries
    itself (the client's own rate-limit handler after it does)."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__(max_retry_count=0)
        self._metrics = metrics

    def can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is not None and response.status_code == 429:
            self._metrics.slack_rate_limit(_method_of(request.url))
        return False


class InstrumentedWebClient(WebClient):
    """A WebClient whose every `api_call` (which all methods go through) is counted."""

    def __init__(self, *args: Any, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._metrics = metrics
        self.retry_handlers.insert(0, RateLimitCounter(metrics))

    def api_call(self, api_method: str, **kwargs: Any) -> Any:
        try:
            result = super().api_call(api_method, **kwargs)
        except SlackApiError as exc:
            self._metrics.slack_call(api_method, error=str(exc.response.get("error") or "unknown"))
            raise
        except Exception as exc:
            self._metrics.slack_call(api_method, error=type(exc).__name__)
            raise
        self._metrics.slack_call(api_method)
        return result
