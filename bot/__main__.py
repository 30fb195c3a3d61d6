"""The `rollout-bot` command line: serve, check, audit export, audit verify."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import re
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from bot.config import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from slack_bolt import App

    from bot.domain.audit import VerifyResult
    from bot.runtime import Runtime

log = logging.getLogger("rollout-bot")

# The repository this bot runs from, when it runs from one (not an installed wheel or the image).
CHECKOUT = Path(__file__).resolve().parents[1]
PLAYGROUND_ELSEWHERE = (
    "rollout-bot: the playground is not installed with the bot; it runs from a checkout of "
    "the repository, with `make playground`"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rollout-bot",
        description="Slack chat-ops for Kubernetes Deployment rollouts.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the bot (Socket Mode unless --http)")
    serve.add_argument("--http", action="store_true", help="serve Slack's HTTP requests")
    serve.add_argument("--port", type=int, default=3000, help="HTTP port (default 3000)")
    serve.add_argument(
        "--host", default=None, help="bind address (default ROLLOUT_BOT_HTTP_HOST or 127.0.0.1)"
    )
    check = sub.add_parser(
        "check",
        help="validate the policy and the connections; non-zero on problems",
        description="Validate the policy and, with the bot's settings in the environment, "
        "the connections to Redis, the cluster and Slack. Without SLACK_BOT_TOKEN, "
        "`check --policy FILE` checks the file alone: no network, no cluster.",
    )
    check.add_argument(
        "--policy",
        type=Path,
        default=None,
        metavar="FILE",
        help="the policy file to check (instead of ROLLOUT_BOT_POLICY)",
    )
    # Listed here only: `main` hands everything after the word to the playground's own parser.
    sub.add_parser(
        "playground", help="try the bot in a browser, without a Slack workspace", add_help=False
    )
    audit = sub.add_parser("audit", help="the audit trail")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    export = audit_sub.add_parser("export", help="write entries as JSON lines to stdout")
    export.add_argument(
        "--since", default=None, help="ISO date or time (UTC if no offset), e.g. 2026-11-01"
    )
    export.add_argument(
        "--context",
        default=None,
        help="only the entries of this cluster (kubeconfig context); each entry names its own",
    )
    verify = audit_sub.add_parser(
        "verify", help="check the hash chain; non-zero names the first bad entry or the gap"
    )
    verify.add_argument(
        "--checkpoint",
        default=None,
        metavar="SEQ:HASH",
        help="a head printed by an earlier run, kept outside Redis: the trail must still reach it",
    )
    verify.add_argument(
        "--unsigned-before",
        type=_seq_argument,
        default=None,
        metavar="SEQ",
        help="with an audit key: accept unsigned entries below SEQ, written before the key was "
        "set (default ROLLOUT_BOT_AUDIT_UNSIGNED_BEFORE, else 1: none)",
    )
    return parser


def _seq_argument(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a seq (1 or more), got {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    from bot.observability.logs import configure_logging

    arguments = sys.argv[1:] if argv is None else argv
    # A thread that dies of an unexpected error is logged by name, never with a traceback
    # (which may quote values, and is noise in an operator's log).
    threading.excepthook = _log_thread_error
    if arguments[:1] == ["playground"]:  # starts its own stand-ins; needs none of the settings
        return _playground(arguments[1:])
    args = _parser().parse_args(arguments)
    if args.command == "check":
        from bot.check import check_policy_file, has_credentials

        # Without the bot's credentials there is nothing to connect to: the file alone.
        if args.policy is not None and not has_credentials():
            return check_policy_file(args.policy)
    try:
        settings = load_settings()
    except ConfigError as exc:
        hint = ""
        if args.command == "check" and args.policy is None:
            hint = "; `rollout-bot check --policy FILE` checks a policy file without them"
        print(f"rollout-bot: {exc}{hint}", file=sys.stderr)
        return 2
    # Text or JSON lines at ROLLOUT_BOT_LOG_LEVEL, with anything shaped like a token redacted.
    configure_logging(settings.log_format, settings.log_level)
    if args.command == "check":
        from bot.check import run_check

        if args.policy is not None:
            settings = settings.model_copy(update={"policy_file": args.policy})
        return run_check(settings)
    if args.command == "audit":
        return _audit(settings, args)
    code = _serve(settings, args)
    # Everything that matters was flushed and released by Runtime.stop(). What is left are
    # daemon threads (watches blocked on the API server's stream, waitress workers), which
    # must not race the interpreter's own shutdown: end the process here.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _playground(argv: list[str]) -> int:
    """The playground is a development tool kept in the repository's tests/ (with the Slack
    stand-in and local control plane it runs on), so only a checkout has it: an installed
    wheel or the image says where to find it instead of failing on an import."""
    if not (CHECKOUT / "tests" / "playground" / "__init__.py").is_file():
        print(PLAYGROUND_ELSEWHERE, file=sys.stderr)
        return 2
    # The checkout's root is not on the path of the `rollout-bot` script, and it goes first:
    # another distribution's stray top-level `tests` package must not stand in for ours.
    sys.path.insert(0, str(CHECKOUT))
    playground = importlib.import_module("tests.playground")
    return int(playground.main(argv))


def _log_thread_error(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    log.error("unexpected %s in thread %s", args.exc_type.__name__, name)


def _audit(settings: Settings, args: argparse.Namespace) -> int:
    from bot.composition.redis_clients import audit_log, redis_client
    from bot.domain.errors import StoreError

    log_ = audit_log(settings, redis_client(settings))
    try:
        if args.audit_command == "export":
            since = None
            if args.since:
                try:
                    since = datetime.fromisoformat(args.since)
                except ValueError:
                    print(
                        f"rollout-bot: --since must be an ISO date or time, got {args.since!r}",
                        file=sys.stderr,
                    )
                    return 2
                if since.tzinfo is None:
                    since = since.replace(tzinfo=UTC)
            for entry in log_.export(since):
                if args.context is not None and entry.cluster != args.context:
                    continue
                sys.stdout.write(entry.model_dump_json() + "\n")
            return 0
        checkpoint = None
        if args.checkpoint:
            seq_text, _, digest = args.checkpoint.partition(":")
            if not seq_text.isdigit() or not re.fullmatch(r"[0-9a-f]{64}", digest):
                print(
                    "rollout-bot: --checkpoint must be SEQ:HASH as printed by `audit verify` "
                    "(head: seq N hash H)",
                    file=sys.stderr,
                )
                return 2
            checkpoint = (int(seq_text), digest)
        unsigned_before = args.unsigned_before or settings.audit_unsigned_before
        result = log_.verify(checkpoint, unsigned_before=unsigned_before)
    except StoreError as exc:
        print(f"rollout-bot: {exc.message}", file=sys.stderr)
        return 3
    keyed = settings.audit_keyring() is not None
    return _report_verification(result, unsigned_before if keyed else None)


def _report_verification(result: VerifyResult, unsigned_before: int | None = None) -> int:
    """Success: what was verified, in plain lines. Failure: one JSON line on stdout naming the
    first bad entry or the gap, exit 1. Warnings (what could not be established) are lines
    starting with `warning:`, on stdout with success and on stderr with a failure."""
    if result.ok:
        span = f" (seq {result.first_seq} to {result.last_seq})" if result.checked else ""
        print(f"audit trail OK: {result.checked} entries verified{span}")
        if result.keyed_from is not None:
            print(f"keyed from seq {result.keyed_from}; key ids seen: {', '.join(result.key_ids)}")
        else:
            print("keyed from: none (no retained entry is signed with an HMAC key)")
        if unsigned_before is not None and unsigned_before > 1:
            print(
                f"unsigned entries accepted below seq {unsigned_before} (written before the key "
                "was set; ROLLOUT_BOT_AUDIT_UNSIGNED_BEFORE or --unsigned-before)"
            )
        if result.head_seq is not None:
            print(f"head: seq {result.head_seq} hash {result.head_hash}")
            print(f"checkpoint: {result.head_seq}:{result.head_hash}")
        for warning in result.warnings:
            print(f"warning: {warning}")
        return 0
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    missing = None
    if result.missing_from is not None:
        missing = {
            "from_seq": result.missing_from,
            "to_seq": result.missing_to,
            "at": result.missing_at,
        }
    print(
        json.dumps(
            {
                "ok": False,
                "first_bad_entry": result.first_bad,
                "problem": result.problem,
                "missing": missing,
                "checked": result.checked,
                "keyed_from": result.keyed_from,
                "key_ids": list(result.key_ids),
                "warnings": list(result.warnings),
            }
        )
    )
    return 1


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from slack_sdk.errors import SlackApiError, SlackClientError

    from bot.domain.errors import RolloutBotError
    from bot.domain.policy import PolicyError
    from bot.runtime import Runtime, keep_out_of_garbage_collection
    from bot.worker_main import perform_in_worker

    # Every check comes before any thread starts: a refused start-up leaves nothing running.
    if args.http and settings.slack_signing_secret is None:
        print(
            "rollout-bot: SLACK_SIGNING_SECRET is not set or empty; HTTP mode cannot verify "
            "that requests come from Slack without it",
            file=sys.stderr,
        )
        return 2
    if not args.http and settings.slack_app_token is None:
        print(
            "rollout-bot: SLACK_APP_TOKEN is not set or empty; Socket Mode needs it "
            "(or use --http)",
            file=sys.stderr,
        )
        return 2
    try:
        runtime = Runtime(settings)
    except PolicyError as exc:
        print(f"rollout-bot: invalid policy file:\n{exc}", file=sys.stderr)
        return 2
    except RolloutBotError as exc:
        print(f"rollout-bot: {exc.user_message}", file=sys.stderr)
        return 2
    try:
        identity = runtime.slack.auth_test()
        log.info("connected to Slack as %s", identity.get("user_id"))
    except (SlackApiError, SlackClientError, OSError) as exc:
        reason = exc.response.get("error") if isinstance(exc, SlackApiError) else type(exc).__name__
        print(f"rollout-bot: SLACK_BOT_TOKEN was not accepted by Slack ({reason})", file=sys.stderr)
        return 2
    secret = settings.slack_signing_secret
    app = runtime.bolt_app(
        signing_secret=secret.get_secret_value() if args.http and secret is not None else None
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    sys.setswitchinterval(settings.switch_interval_ms / 1000)
    keep_out_of_garbage_collection()
    runtime.start(worker_entry=perform_in_worker)
    try:
        if args.http:
            return _serve_http(runtime, app, settings, args)
        try:
            health = runtime.start_health_listener(settings.http_host, settings.health_port)
        except OSError as exc:
            print(
                f"rollout-bot: cannot serve /healthz on {settings.http_host}:"
                f"{settings.health_port} (ROLLOUT_BOT_HEALTH_PORT): {exc.strerror or exc}",
                file=sys.stderr,
            )
            return 2
        try:
            return _serve_socket_mode(app, settings)
        finally:
            health.close()
    finally:
        log.info("stopping")
        runtime.stop()
        log.info("stopped")


def _serve_http(runtime: Runtime, app: App, settings: Settings, args: argparse.Namespace) -> int:
    import waitress

    from handlers.http import MAX_BODY_BYTES, wsgi_app

    assert settings.slack_signing_secret is not None
    host = args.host or settings.http_host
    log.info("serving HTTP on %s:%d", host, args.port)
    waitress.serve(
        wsgi_app(
            app,
            runtime.health_route(),
            signing_secret=settings.slack_signing_secret.get_secret_value(),
        ),
        host=host,
        port=args.port,
        threads=settings.listener_threads,
        ident="rollout-bot",
        # Slack retries nothing for commands; a slow client must not pin a thread.
        channel_timeout=30,
        # waitress itself refuses a larger body while reading it, before any buffering.
        max_request_body_size=MAX_BODY_BYTES,
    )
    return 0


def _serve_socket_mode(app: App, settings: Settings) -> int:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    assert settings.slack_app_token is not None
    handler = SocketModeHandler(
        app,
        app_token=settings.slack_app_token.get_secret_value(),
        concurrency=settings.listener_threads,
    )
    log.info("connecting to Slack in Socket Mode")
    try:
        handler.start()  # type: ignore[no-untyped-call]
    finally:
        handler.close()  # type: ignore[no-untyped-call]
    return 0


if __name__ == "__main__":
    sys.exit(main())
