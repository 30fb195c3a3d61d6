"""What only the tests use to drive and observe the bot: the bot as a process and a driver
that talks to it as Slack does, kubectl as the oracle, proxies that inject faults, waiting.
The world around the bot (control plane, Redis, the Slack stand-ins) is the development kit,
tests/devkit/, shared with the playground.
"""
