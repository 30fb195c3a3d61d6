"""Counts every Slack Web API request the bot makes: requests by method, failures by Slack's
error code (or HTTP status, or exception type), and 429s.

The counting is a retry handler placed first in the client's list: the SDK consults the retry
handlers after every attempt, successful or not, and Bolt copies the list into the per-request
clients it hands to listeners, so every request is seen once, including retried ones.
"""

from __future__ import annotations

from typing import Any

from slack_sdk import WebClient
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from bot.observability.metrics import Metrics


def _method_of(url: str) -> str:
    """`https://slack.com/api/chat.postMessage?x=1` -> `chat.postMessage`."""
    return url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]


class SlackCallCounter(RetryHandler):
    """Sees each attempt's answer, counts it, and never asks for a retry itself (the retry
    handlers after it decide that)."""

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
        method = _method_of(request.url)
        if response is None:
            self._metrics.slack_call(method, error=type(error).__name__ if error else "unknown")
        elif response.status_code == 429:
            self._metrics.slack_call(method, error="ratelimited")
            self._metrics.slack_rate_limit(method)
        elif response.status_code >= 400:
            self._metrics.slack_call(method, error=f"http_{response.status_code}")
        else:
            body = response.body if isinstance(response.body, dict) else {}
            failed = body.get("ok") is False
            self._metrics.slack_call(
                method, error=str(body.get("error") or "unknown") if failed else None
            )
        return False


class InstrumentedWebClient(WebClient):
    """A WebClient whose requests are all counted (see SlackCallCounter)."""

    def __init__(self, *args: Any, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_handlers.insert(0, SlackCallCounter(metrics))
