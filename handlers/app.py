"""The Bolt App and every listener, registered once."""

from __future__ import annotations

from slack_bolt import App
from slack_sdk import WebClient

from bot.services.container import Services
from handlers.work import Dispatch


def build_app(
    services: Services,
    client: WebClient,
    *,
    signing_secret: str | None,
    dispatch: Dispatch,
) -> App:
    """The App for HTTP mode (`signing_secret` set) or Socket Mode (None: Slack's WebSocket is
    authenticated by the app-level token, and no request signature is checked)."""
    from handlers import approval_buttons, canary, commands, progress_buttons, promotions

    app = App(
        client=client,
        signing_secret=signing_secret or "",
        # Socket Mode has no signatures to check; HTTP mode always has a real secret.
        request_verification_enabled=signing_secret is not None,
        # auth.test at start-up is done by `serve` with a clear message; Bolt's own check would
        # raise a bare exception.
        token_verification_enabled=False,
        # Every listener only parses, acks and hands the work on (`dispatch` never blocks), so
        # it runs in the request's own thread and the response leaves as soon as it returns.
        # Bolt's default runs it on a pool and polls for the ack every 10 ms: 11 ms for an ack
        # that takes under one, and a polling thread per request in flight.
        process_before_response=True,
    )
    commands.register(app, services, dispatch)
    approval_buttons.register(app, dispatch)
    progress_buttons.register(app, dispatch)
    canary.register(app, dispatch)
    promotions.register(app, dispatch)
    return app
