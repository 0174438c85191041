"""A message's attachments, checked before anything stores them: the size of the whole message against
MAILGW_MAX_MESSAGE_BYTES first, then each file's name, type and content id, and no executable or script, whether
its name, its declared type or its first bytes say so."""

import contextlib
import hashlib
import re
import threading
from dataclasses import dataclass

MAX_ATTACHMENTS = 20
MAX_FILENAME = 255
MAX_CONTENT_ID = 100
CONTENT_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")
CONTENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]*")
# What mail filters refuse (Gmail's list of blocked file types, Outlook's Level 1): programs and scripts.
BLOCKED_EXTENSIONS = frozenset(
    """ade adp apk appx appxbundle bat cab chm cmd com cpl diagcab diagcfg diagpkg dll dmg ex_ exe hta img ins iso isp
    jar jnlp js jse lib lnk mde msc msi msix msixbundle msp mst nsh pif ps1 psc1 reg scr sct shb sh sys vb vbe vbs vhd
    vxd wsc wsf wsh xll""".split()
)
BLOCKED_TYPES = frozenset(
    """application/x-msdownload application/x-msdos-program application/x-ms-installer application/x-msi
    application/vnd.microsoft.portable-executable application/x-dosexec application/x-executable
    application/x-elf application/x-mach-binary application/x-sh application/x-shellscript application/x-csh
    application/x-bat application/bat application/x-javascript application/javascript text/javascript
    application/ecmascript text/ecmascript application/java-archive application/x-java-archive
    application/x-java-jnlp-file application/hta application/x-ms-shortcut application/vbscript text/vbscript
    application/x-powershell application/x-apple-diskimage application/vnd.android.package-archive
    application/x-ms-dos-executable application/x-pie-executable application/x-sharedlib text/x-shellscript
    text/x-sh text/x-python text/x-perl""".split()
)
# The first bytes of a program, whatever its name says: PE (MZ), ELF, Mach-O (both byte orders, 32 and 64 bit, fat).
EXECUTABLE_MAGIC = (
    b"MZ",
    b"\x7fELF",
    b"\xfe\xed\xfa\xce",
    b"\xfe\xed\xfa\xcf",
    b"\xce\xfa\xed\xfe",
    b"\xcf\xfa\xed\xfe",
)
EXECUTABLE_MAGIC += (b"\xca\xfe\xba\xbe", b"#!")


@dataclass(frozen=True)
class Attachment:
    """A file sent with the message; with a content_id, an image its HTML shows inline ("cid:" + content_id)."""

    filename: str
    content_type: str
    content: bytes
    content_id: str = ""

    @property
    def inline(self) -> bool:
        return bool(self.content_id)

    def digest(self) -> list[str]:
        """What a request's fingerprint keeps of it (the content by its hash)."""
        return [self.filename, self.content_type, self.content_id, hashlib.sha256(self.content).hexdigest()]


def message_size(subject: str, text_body: str, html_body: str, attachments: list[Attachment]) -> int:
    """The bytes a request asks to send, before MIME encoding: what MAILGW_MAX_MESSAGE_BYTES bounds."""
    return (
        len(subject.encode("utf-8", "replace"))
        + len(text_body.encode("utf-8", "replace"))
        + len(html_body.encode("utf-8", "replace"))
        + sum(len(attachment.content) + len(attachment.filename) for attachment in attachments)
    )


def check(attachments: list[Attachment], html_body: str) -> dict[str, str]:
    """Every problem of the attachments, as field violations (none: they may be sent)."""
    violations: dict[str, str] = {}
    if len(attachments) > MAX_ATTACHMENTS:
        return {"attachments": f"at most {MAX_ATTACHMENTS} attachments"}
    content_ids = set()
    for number, attachment in enumerate(attachments):
        field = f"attachments[{number}]"
        problem = _filename_problem(attachment.filename.strip())  # checked as it is stored: "a.exe " is a.exe
        if problem:
            violations[f"{field}.filename"] = problem
        kind = attachment.content_type.strip().lower()
        if not CONTENT_TYPE.fullmatch(kind):
            violations[f"{field}.content_type"] = 'a MIME type such as "application/pdf" or "image/png"'
        elif kind in BLOCKED_TYPES:
            violations[f"{field}.content_type"] = f"{kind} is a program or script type, which is refused"
        if not attachment.content:
            violations[f"{field}.content"] = "empty"
        elif attachment.content[:64].lstrip(b"\xef\xbb\xbf \t\r\n").startswith(EXECUTABLE_MAGIC):
            violations[f"{field}.content"] = "a program or script (by its first bytes), which is refused"
        if attachment.content_id:
            if len(attachment.content_id) > MAX_CONTENT_ID or not CONTENT_ID.fullmatch(attachment.content_id):
                violations[f"{field}.content_id"] = f"1-{MAX_CONTENT_ID} ASCII letters, digits, '.', '_', '@', '+', '-'"
            elif attachment.content_id in content_ids:
                violations[f"{field}.content_id"] = "two attachments have this content_id"
            elif not kind.startswith("image/"):
                violations[f"{field}.content_id"] = "only an image is shown inline"
            elif f"cid:{attachment.content_id}" not in html_body:
                violations[f"{field}.content_id"] = f'the HTML body shows no "cid:{attachment.content_id}"'
            content_ids.add(attachment.content_id)
    return violations


def _filename_problem(filename: str) -> str:
    if not filename.strip():
        return "required"
    if len(filename) > MAX_FILENAME:
        return f"longer than {MAX_FILENAME} characters"
    if not filename.isprintable() or "/" in filename or "\\" in filename or filename.strip(". ") != filename.strip():
        return "a file's name, without a path, control characters or leading dots"
    if "=?" in filename:  # a mail program would decode it as an encoded word, into a name nobody checked
        return 'a name with "=?" in it'
    extension = filename.rpartition(".")[2].lower() if "." in filename else ""
    if extension in BLOCKED_EXTENSIONS:
        return f".{extension} is a program or script type, which is refused"
    return ""


class LargeMessages:
    """How many bytes of attachments this process copies at once: accepting (the request's files copied out of it and
    into the database) and sending (read back, base64 in MIME, base64 again in SES's JSON) each make several copies
    of every file, so without a bound 16 callers sending 5 MB at once held 700 MB (bench line 9). A message waits
    until its files fit in what the others leave; one larger than the whole budget goes alone. Accepting and sending
    each have their own, so a send waiting for SES never holds up a SendEmail."""

    def __init__(self, budget: int):
        self._budget = budget
        self._used = 0
        self._room = threading.Condition()

    @contextlib.contextmanager
    def hold(self, size: int):
        if size <= SMALL:  # most mail: never waits, never counted
            yield
            return
        size = min(size, self._budget)
        with self._room:
            self._room.wait_for(lambda: self._used + size <= self._budget)
            self._used += size
        try:
            yield
        finally:
            with self._room:
                self._used -= size
                self._room.notify_all()


SMALL = 256 * 1024  # a message whose files are smaller passes the budget by
LARGE_MESSAGE_BUDGET = 12 * 1024 * 1024
