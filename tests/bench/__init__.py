"""`python -m tests.bench` (`make bench`): a performance report, not a test.

It brings up the same local control plane, Redis and Slack stand-in as the integration tests
and measures, each side by side with a baseline in the same run:

1. ack latency of `/rollout status|history` over signed HTTP at 1, 10 and 50 concurrent
   clients, against the real bot and a bare Bolt App that only acks (same waitress threads);
2. Approve-click ack latency and click → "Done" card update, against the same bare app;
3. live progress for 200 simultaneous rollouts (lag behind the cluster, API requests, CPU,
   chat.update calls) against a naive one-thread-per-rollout 1 s polling loop.

Modules: `harness` (shared set-up), `phases` (the measurements), `loadgen` (client process),
`bare_app` (the ack-only baseline server), `poller` (the polling baseline), `countproxy` (a
counting TLS proxy in front of the apiserver), `observer` (the bench's own Deployment watch),
`stats`. Knobs (environment): BENCH_ACK_REQUESTS, BENCH_ACK_LEVELS, BENCH_APPROVALS,
BENCH_PROGRESS_N, BENCH_PROGRESS_CLIENTS, BENCH_RESULTS, BENCH_CLUSTER_DIR (reuse a running
control plane from `make cluster-up`).
"""
