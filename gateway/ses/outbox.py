"""The local transport: each composed message becomes an .eml file instead of an SES call."""

import datetime
import os
import uuid
from pathlib import Path


class OutboxTransport:
    """Writes raw MIME to `directory`; for development without an AWS account. Paced only by MAILGW_SEND_RATE."""

    paced_by_ses = False

    def __init__(self, directory: str):
        self._directory = Path(directory)
        self._directory.mkdir(parents=True, exist_ok=True)

    def send(self, raw: bytes, *, sender: str, recipient: str, tags: dict[str, str]) -> str:
        message_id = f"outbox-{uuid.uuid4().hex}"
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S")
        path = self._directory / f"{stamp}-{message_id}.eml"
        partial = path.with_suffix(".part")
        partial.write_bytes(raw)
        os.replace(partial, path)  # readers never see half a message
        return message_id
