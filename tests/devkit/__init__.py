"""The development kit: the world around the bot, run locally for the tests and the playground.

A real Kubernetes control plane with a fake kubelet (control_plane, fake_kubelet, cluster/ for
the Go builds), private redis-servers and Sentinels (redis_server, redis_sentinel), and the
Slack stand-ins (slack/). It lives in tests/, outside the bot's package, so the wheel and the
image carry only the product.
"""
