"""The Bolt App, its one global middleware and every listener, registered once."""

from __future__ import annotations

from slack_bolt import App
from slack_sdk import WebClient

from bot.services.use_cases import Services
from handlers.handoff import Dispatch
from handlers.request_context import attach_request_context


def build_app(
    services: Services,
    client: WebClient,
    *,
    signing_secret: str | None,
    dispatch: Dispatch,
) -> App:
    """The App for HTTP mode (`signing_secret` set) or Socket Mode (None: Slack's WebSocket is
    authenticated by the app-level token, and there is no request signature).

    In HTTP mode Bolt does not check the signature again: `handlers.http` checks it once, over
    the raw bytes, before any request reaches Bolt (a body Bolt could not parse must be told
    apart as signed or not before it is read as text)."""
    from handlers import (
        approval_buttons,
        canary_buttons,
        progress_buttons,
        promotion_buttons,
        slash_command,
    )

    app = App(
        client=client,
        signing_secret=signing_secret or "",
        request_verification_enabled=False,
        # auth.test at start-up is done by `serve` with a clear message; Bolt's own check would
        # raise a bare exception.
        token_verification_enabled=False,
        # Every listener only parses, acks and hands the work on (`dispatch` never blocks), so
        # it runs in the request's own thread and the response leaves as soon as it returns.
        # Bolt's default runs it on a pool and polls for the ack every 10 ms: 11 ms for an ack
        # that takes under one, and a polling thread per request in flight.
        process_before_response=True,
    )
    # Who acts and the request's replay key, for every listener, in one place.
    app.use(attach_request_context)
    slash_command.register(app, services, dispatch)
    approval_buttons.register(app, dispatch)
    progress_buttons.register(app, dispatch)
    canary_buttons.register(app, dispatch)
    promotion_buttons.register(app, dispatch)
    return app
