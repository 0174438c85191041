"""Sample SES events shaped as the AWS SES developer guide shows them, in both formats.

Event publishing ("Examples of event data that Amazon SES publishes to Amazon SNS") has a
top-level `eventType` and `mail.tags`; identity notifications ("Amazon SNS notification
examples for Amazon SES") have `notificationType`, no tags, and exist only for Bounce,
Complaint and Delivery. Every builder returns a dict; `message()` turns it into the JSON
text an SNS notification carries in its `Message`.

Builders taking `**envelope` pass it to `ses_event`: identity=True for the identity format,
destination=[...] for mail.destination, tags={"contact_id": "..."} for our EmailTags.
"""

import json
from collections.abc import Sequence

MESSAGE_ID = "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000"
RECIPIENT = "recipient@example.com"
FEEDBACK_ID = "01000157c44f053b-61b59c11-9236-11e6-8f96-7be8aexample-000000"
USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/60.0.3112.90 Safari/537.36"
)


def mail(
    destination: Sequence[str] = (RECIPIENT,),
    *,
    identity: bool = False,
    tags: dict[str, str] | None = None,
    message_id: str = MESSAGE_ID,
) -> dict:
    """The `mail` object; event publishing adds SES's own tags plus ours, identity notifications none."""
    source = "sender@example.com"
    result = {
        "timestamp": "2017-08-05T00:40:02.012Z",
        "source": source,
        "sourceArn": f"arn:aws:ses:us-east-1:123456789012:identity/{source}",
        "sendingAccountId": "123456789012",
        "messageId": message_id,
        "destination": list(destination),
        "headersTruncated": False,
        "headers": [
            {"name": "From", "value": source},
            {"name": "To", "value": ", ".join(destination)},
            {"name": "Subject", "value": "Message sent from Amazon SES"},
            {"name": "MIME-Version", "value": "1.0"},
            {
                "name": "Content-Type",
                "value": 'multipart/alternative; boundary="----=_Part_7307378_1629847660.1516840721503"',
            },
        ],
        "commonHeaders": {
            "from": [source],
            "to": list(destination),
            "messageId": message_id,
            "subject": "Message sent from Amazon SES",
        },
    }
    if identity:
        result["sourceIp"] = "127.0.3.0"
    else:
        result["tags"] = {
            "ses:configuration-set": ["ConfigSet"],
            "ses:source-ip": ["192.0.2.0"],
            "ses:from-domain": ["example.com"],
            "ses:caller-identity": ["ses_user"],
            **{name: [value] for name, value in (tags or {}).items()},
        }
    return result


def ses_event(
    event_type: str,
    detail_key: str,
    detail: dict | None,
    *,
    identity: bool = False,
    destination: Sequence[str] = (RECIPIENT,),
    tags: dict[str, str] | None = None,
    message_id: str = MESSAGE_ID,
) -> dict:
    """A whole event: the type under eventType (or notificationType), `mail`, and `detail` under `detail_key`."""
    event = {"notificationType" if identity else "eventType": event_type}
    if detail is not None:
        event[detail_key] = detail
    event["mail"] = mail(destination, identity=identity, tags=tags, message_id=message_id)
    return event


def bounced_recipient(
    address: str = RECIPIENT,
    *,
    status: str | None = "5.1.1",
    diagnostic_code: str | None = "smtp; 550 5.1.1 user unknown",
    action: str | None = "failed",
) -> dict:
    """One `bounce.bouncedRecipients[]` entry; None leaves a field out (bounces without a DSN have none)."""
    entry = {"emailAddress": address, "action": action, "status": status, "diagnosticCode": diagnostic_code}
    return {key: value for key, value in entry.items() if value is not None}


def bounce_event(
    bounce_type: str = "Permanent",
    subtype: str = "General",
    recipients: Sequence[dict] | None = None,
    **envelope,
) -> dict:
    """A Bounce; mail.destination defaults to the bounced addresses."""
    recipients = list(recipients) if recipients is not None else [bounced_recipient()]
    envelope.setdefault("destination", [r["emailAddress"] for r in recipients])
    bounce = {
        "bounceType": bounce_type,
        "bounceSubType": subtype,
        "bouncedRecipients": recipients,
        "timestamp": "2017-08-05T00:41:02.669Z",
        "feedbackId": FEEDBACK_ID,
        "reportingMTA": "dsn; mta.example.com",
    }
    if envelope.get("identity"):
        bounce["remoteMtaIp"] = "127.0.2.0"
    return ses_event("Bounce", "bounce", bounce, **envelope)


def complaint_event(recipients: Sequence[str] = (RECIPIENT,), feedback_type: str | None = "abuse", **envelope) -> dict:
    """A Complaint; feedback_type=None is a complaint without a feedback report (no type, agent or arrival date)."""
    envelope.setdefault("destination", list(recipients))
    complaint = {
        "complainedRecipients": [{"emailAddress": address} for address in recipients],
        "timestamp": "2017-08-05T00:41:02.669Z",
        "feedbackId": FEEDBACK_ID,
    }
    if feedback_type is not None:
        complaint |= {
            "userAgent": USER_AGENT,
            "complaintFeedbackType": feedback_type,
            "arrivalDate": "2017-08-05T00:41:02.669Z",
        }
    return ses_event("Complaint", "complaint", complaint, **envelope)


def delivery_event(**envelope) -> dict:
    delivery = {
        "timestamp": "2016-10-19T23:21:04.133Z",
        "processingTimeMillis": 11893,
        "recipients": list(envelope.get("destination", (RECIPIENT,))),
        "smtpResponse": "250 2.6.0 Message received",
        "reportingMTA": "mta.example.com",
    }
    if envelope.get("identity"):
        delivery["remoteMtaIp"] = "127.0.2.0"
    return ses_event("Delivery", "delivery", delivery, **envelope)


def send_event(**envelope) -> dict:
    return ses_event("Send", "send", {}, **envelope)


def reject_event(**envelope) -> dict:
    return ses_event("Reject", "reject", {"reason": "Bad content"}, **envelope)


def delivery_delay_event(**envelope) -> dict:
    delay = {
        "timestamp": "2020-06-16T00:25:40.095Z",
        "delayType": "TransientCommunicationFailure",
        "expirationTime": "2020-06-16T00:25:40.914Z",
        "delayedRecipients": [
            {
                "emailAddress": RECIPIENT,
                "status": "4.4.1",
                "diagnosticCode": "smtp; 421 4.4.1 Unable to connect to remote host",
            }
        ],
    }
    return ses_event("DeliveryDelay", "deliveryDelay", delay, **envelope)


def open_event(**envelope) -> dict:
    opened = {"ipAddress": "192.0.2.1", "timestamp": "2017-08-09T22:00:19.652Z", "userAgent": USER_AGENT}
    return ses_event("Open", "open", opened, **envelope)


def click_event(**envelope) -> dict:
    click = {
        "ipAddress": "192.0.2.1",
        "link": "http://docs.aws.amazon.com/ses/latest/DeveloperGuide/send-email-smtp.html",
        "linkTags": {"samplekey0": ["samplevalue0"], "samplekey1": ["samplevalue1"]},
        "timestamp": "2017-08-09T23:51:25.570Z",
        "userAgent": USER_AGENT,
    }
    return ses_event("Click", "click", click, **envelope)


def rendering_failure_event(**envelope) -> dict:
    failure = {
        "errorMessage": "Attribute 'attributeName' is not present in the rendering data.",
        "templateName": "MyTemplate",
    }
    return ses_event("Rendering Failure", "failure", failure, **envelope)


def subscription_event(unsubscribe_all: bool = True, **envelope) -> dict:
    """A Subscription (SES list management) change; the recipients are mail.destination."""
    subscription = {
        "contactList": "ContactListName",
        "timestamp": "2022-01-12T01:00:17.910Z",
        "source": "UnsubscribeHeader",
        "newTopicPreferences": {
            "unsubscribeAll": unsubscribe_all,
            "topicSubscriptionStatus": [{"topicName": "ExampleTopicName", "subscriptionStatus": "OptOut"}],
        },
        "oldTopicPreferences": {
            "unsubscribeAll": False,
            "topicSubscriptionStatus": [{"topicName": "ExampleTopicName", "subscriptionStatus": "OptOut"}],
        },
    }
    return ses_event("Subscription", "subscription", subscription, **envelope)


def subscription_succeeded_notice() -> dict:
    """What SES publishes once when a topic is set for identity notifications: no mail object."""
    return {
        "notificationType": "AmazonSnsSubscriptionSucceeded",
        "message": "You have successfully subscribed your Amazon SNS topic to receive notifications from Amazon SES.",
    }


def message(event: dict) -> str:
    """The JSON text SNS carries in a notification's `Message`."""
    return json.dumps(event)


# Every event type with its builder; the first three also exist as identity notifications.
EVENT_BUILDERS = {
    "Bounce": bounce_event,
    "Complaint": complaint_event,
    "Delivery": delivery_event,
    "Send": send_event,
    "Reject": reject_event,
    "DeliveryDelay": delivery_delay_event,
    "Open": open_event,
    "Click": click_event,
    "Rendering Failure": rendering_failure_event,
    "Subscription": subscription_event,
}
IDENTITY_TYPES = ("Bounce", "Complaint", "Delivery")
