"""The Bolt App and every listener, registered once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from slack_bolt import App
from slack_sdk import WebClient

from bot.services.container import Services
from handlers.work import Dispatch


def build_app(
    services: Services,
    client: WebClient,
    *,
    signing_secret: str | None,
    listener_threads: int,
    dispatch: Dispatch,
) -> App:
    """The App for HTTP mode (`signing_secret` set) or Socket Mode (None: Slack's WebSocket is
    authenticated by the app-level token, and no request signature is checked)."""
    from handlers import approval_buttons, commands, progress_buttons

    app = App(
        client=client,
        signing_secret=signing_secret or "",
        # Socket Mode has no signatures to check; HTTP mode always has a real secret.
        request_verification_enabled=signing_secret is not None,
        # auth.test at start-up is done by `serve` with a clear message; Bolt's own check would
        # raise a bare exception.
        token_verification_enabled=False,
        # Listeners only parse, ack and hand off to `services.background`, but a burst of
        # commands still needs a thread each until its ack; Bolt's default of 5 answers the 6th
        # with 404.
        listener_executor=ThreadPoolExecutor(
            max_workers=listener_threads, thread_name_prefix="listener"
        ),
    )
    commands.register(app, services, dispatch)
    approval_buttons.register(app, dispatch)
    progress_buttons.register(app, dispatch)
    return app
