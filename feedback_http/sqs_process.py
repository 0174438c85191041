"""`mailgw feedback-sqs`: the SQS intake as a process of its own, without the HTTP server; SIGTERM or Ctrl-C finishes
the batch under way and exits 0."""

import asyncio
import signal

from feedback_http import intake, metrics
from feedback_http.config import FeedbackSettings, sns_endpoint
from feedback_http.sqs import polling
from gateway.core.config import ConfigError
from gateway.core.logs import setup_logging
from gateway.core.startup import run
from gateway.store.models import open_database


def main() -> None:
    """`mailgw feedback-sqs`: only the SQS intake, no HTTP server; SIGTERM or Ctrl-C finishes the batch and exits 0."""
    setup_logging()
    run(_start)


def _start() -> int:
    settings, endpoint = FeedbackSettings.from_env(), sns_endpoint()
    if not settings.sqs_queue_url:
        raise ConfigError("MAILGW_SQS_QUEUE_URL must name the queue to poll")
    open_database(settings.database_url)
    intake.warn_about(settings, endpoint)
    return asyncio.run(_poll_until_stopped(settings, endpoint))


async def _poll_until_stopped(settings: FeedbackSettings, endpoint: str | None) -> int:
    async with intake.opened(settings, sns_endpoint_url=endpoint, on_rejected=metrics.verification_failed) as feedback:
        async with polling(feedback, settings) as poller:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, poller.stop)
            await poller.stop_requested()
    return 0


if __name__ == "__main__":
    main()
