"""Slack, stood in for locally: what the bot talks to and what talks to the bot.

- web_api: the Web API and response_url server, which records every call and stores messages;
- block_kit: how Slack rejects a message (Block Kit limits, text length);
- faults: failures and rate limits the Web API stand-in answers on demand;
- socket_mode: the Socket Mode WebSocket server;
- signed_requests: slash commands and button clicks, signed as Slack signs them;
- workspace: the one workspace all of them describe (tokens, team, app, the bot's user).
"""
