"""The Bolt App: its middleware (the request key that guards against replays) and every
listener, registered once."""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from slack_bolt import App, BoltRequest, BoltResponse
from slack_sdk import WebClient

from bot.services.container import Services
from handlers.work import REQUEST_KEY, Dispatch

SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
# A signature verifies while its timestamp is within 5 minutes of now, in either direction, so
# one request stays valid for up to 10 minutes (a timestamp 5 minutes ahead, replayed until
# 5 minutes past it). Remembering it a little longer covers that whole window.
REPLAY_WINDOW_SECONDS = 660


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
    app.use(mark_request_key)
    commands.register(app, services, dispatch)
    approval_buttons.register(app, dispatch)
    progress_buttons.register(app, dispatch)
    return app


def mark_request_key(req: BoltRequest, next: Callable[[], BoltResponse]) -> BoltResponse:
    """Names a signed HTTP request by its signature, so an exact replay inside Slack's 5-minute
    signing window can be told apart and run nothing twice. Runs after Bolt has verified the
    signature, so only genuine requests get a key.

    Only the key is made here: whether it was seen before is asked of Redis by the work after
    the ack (handlers.work.perform), so a slow Redis never delays an acknowledgement. A replay
    is acknowledged like the original and then dropped."""
    signature = (req.headers.get("x-slack-signature") or [""])[0]
    if req.mode == "http" and SIGNATURE.fullmatch(signature):
        req.context[REQUEST_KEY] = "sig" + signature[3:43]
    return next()
