"""moto's server with the two places where moto 5.2 answers differently from AWS that mailgw meets: run as
`python -m gateway.dev.moto_fixes` (the tests' plain moto), or imported by `mailgw dev aws` before it starts moto.

Signing certificates: moto signs each envelope with a certificate it serves at
`https://sns.<region>.amazonaws.com/SimpleNotificationService-<id>.pem`. A client that fetches that path from the
moto server (the sidecar with AWS_ENDPOINT_URL_SNS) sends an unsigned GET with a loopback Host, which moto cannot
tie to a service and answers with S3's 404; here such a path is routed to SNS, as the SNS host would serve it
(for topics in us-east-1, the region of the tests and of `mailgw dev aws`).

GetTopicAttributes: moto stores SignatureVersion (CreateTopic's attribute, SetTopicAttributes) but never returns it,
while SNS returns it once set ("If the API response does not include the SignatureVersion attribute, it means that
the SignatureVersion for the topic has value 1", GetTopicAttributes in the SNS API reference). Without this, every
topic would look like SignatureVersion 1 to `mailgw aws bootstrap`. moto signs with SHA256 (version 2) whatever the
attribute says, so the envelopes it delivers do not change.

Also quiet: werkzeug logs a line per request, and the test starts moto with its output in a pipe that nobody reads
while it runs: a few hundred requests would fill the pipe and block the server.
"""

import logging

from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from moto.server import main
from moto.sns.responses import SNSResponse

_service_from_unsigned_path = DomainDispatcherApplication.get_service_from_unsigned_path


def get_service_from_unsigned_path(path_info: str) -> tuple[str | None, str | None]:
    if path_info.startswith("/SimpleNotificationService-") and path_info.endswith(".pem"):
        return "sns", "us-east-1"  # moto then reads it from its default region, us-east-1: the tests' region
    return _service_from_unsigned_path(path_info)


_get_topic_attributes = SNSResponse.get_topic_attributes


def get_topic_attributes(self: SNSResponse):
    answer = _get_topic_attributes(self)
    version = getattr(self.backend.get_topic(self._get_param("TopicArn")), "signature_version", None)
    if version is not None:
        answer.result["Attributes"]["SignatureVersion"] = str(version)
    return answer


DomainDispatcherApplication.get_service_from_unsigned_path = staticmethod(get_service_from_unsigned_path)
SNSResponse.get_topic_attributes = get_topic_attributes
logging.getLogger("werkzeug").setLevel(logging.WARNING)

if __name__ == "__main__":
    main()
