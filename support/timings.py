"""The timings tests run the gateway with."""

from gateway.core.loops import Timings

# The gateway's loops and backoffs in milliseconds (production: seconds, core/loops.py): a test sees at once what
# takes a second or more in production. Tests of those periods themselves pass their own.
FAST = Timings(
    poll_seconds=0.02,
    sweep_seconds=0.05,
    retry_base_seconds=0.05,
    follow_seconds=0.05,
    suppression_check_seconds=0.05,
    suppression_jitter_seconds=0.0,
    ses_tenant_retry_seconds=0.05,
    event_poll_seconds=0.02,
    webhook_idle_seconds=0.05,
    webhook_retry_base_seconds=0.02,
    webhook_retry_max_seconds=0.2,
    webhook_post_seconds=5.0,
    webhook_lease_seconds=12.0,
)
