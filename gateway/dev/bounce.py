"""`mailgw dev bounce ADDRESS`: a permanent bounce of ADDRESS published to the feedback topic of a local AWS
(`mailgw dev aws`), shaped as SES's event publishing sends it, so a local sidecar marks the contact bounced."""

import datetime
import json
import uuid
from urllib.parse import urlsplit

from gateway.aws import sns_side
from gateway.aws.bootstrap import CLIENT_CONFIG, LastAnswer, aws_errors
from gateway.aws.outcome import BootstrapError
from gateway.core.config import ConfigError, is_loopback
from gateway.ses.transport import aws_session

SOURCE = "noreply@example.com"


def bounce_event(address: str) -> dict:
    """A Permanent/General bounce of `address` (a bare address), as SES publishes it to a configuration set's topic
    ("Examples of event data that Amazon SES publishes to Amazon SNS")."""
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    message_id = f"0100019{uuid.uuid4().hex}-000000"
    return {
        "eventType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": address,
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown (mailgw dev bounce)",
                }
            ],
            "timestamp": now,
            "feedbackId": f"0100019{uuid.uuid4().hex}-000000",
            "reportingMTA": "dsn; mailgw-dev.invalid",
        },
        "mail": {
            "timestamp": now,
            "source": SOURCE,
            "sendingAccountId": "123456789012",
            "messageId": message_id,
            "destination": [address],
            "headersTruncated": False,
            "commonHeaders": {"from": [SOURCE], "to": [address], "messageId": message_id},
        },
    }


def publish_bounce(address: str, topic: str) -> str:
    """Publish the bounce to the topic named `topic`; the topic's ARN. ConfigError when boto3's SNS endpoint is not
    on loopback (a made-up bounce must never reach a real account's sidecar); BootstrapError when the topic is missing
    or the endpoint fails, as `mailgw aws bootstrap` reports it."""
    last = LastAnswer()
    with aws_errors(last):
        sns = last.watch("sns", aws_session().client("sns", config=CLIENT_CONFIG))
        endpoint = sns.meta.endpoint_url
        if not is_loopback(urlsplit(endpoint).hostname or ""):
            raise ConfigError(
                f"mailgw dev bounce publishes to a local AWS only, not to {endpoint}: export the settings that "
                "`mailgw dev aws` prints (AWS_ENDPOINT_URL)"
            )
        arn = sns_side.topic_arn(sns, topic)
        if arn is None:
            raise BootstrapError(f"no SNS topic named {topic} at {endpoint}: run `mailgw aws bootstrap` first")
        sns.publish(TopicArn=arn, Message=json.dumps(bounce_event(address)))
    return arn
