"""`python -m tests.bench` (`make bench`): a performance report, not a test.

It brings up the same local control plane, Redis and Slack stand-in as the integration tests
and measures, each side by side with a baseline in the same run:

1. ack latency of `/rollout status|history|help` over signed HTTP at 1, 10 and 50 concurrent
   clients, against the real bot and two bare Bolt Apps that only ack (same waitress threads):
   one on Bolt's default runner, one on the runner the bot uses. The apps under test get a
   CPU of their own while they are measured (`cpus`);
2. Approve-click ack latency and click → "Done" card update, against the same bare apps;
3. live progress for 200 simultaneous rollouts (lag behind the cluster, API requests, CPU,
   chat.update calls) against a naive one-thread-per-rollout 1 s polling loop.

Modules: `harness` (shared set-up), `phases` (the measurements), `loadgen` (client process),
`bare_app` (the ack-only baseline server), `cpus` (a core of its own for the apps under test),
`poller` (the polling baseline), `countproxy` (a counting TLS proxy in front of the
apiserver), `observer` (the bench's own Deployment watch), `stats`.

Knobs (environment): BENCH_ACK_REQUESTS, BENCH_ACK_ROUNDS, BENCH_ACK_LEVELS, BENCH_ISOLATE,
BENCH_APPROVALS, BENCH_PROGRESS_N, BENCH_PROGRESS_CLIENTS, BENCH_RESULTS, BENCH_CLUSTER_DIR
(reuse a running control plane from `make cluster-up`; it is not the bench's child, so phase 1
cannot move it off the apps' CPU).
"""
