"""Where an HTTP/1.1 request ends, found without a thread: the head, then the body by its
`Content-Length` or its chunked framing (RFC 9112 sections 2-7).

The worker's event loop feeds each connection's bytes to a `RequestFraming` as they arrive
and hands the request to a thread only when it is complete, so a client that sends slowly
costs a buffer, not a thread. Only framing is decided here; gunicorn's parser still
validates every byte of the request in the thread. When the framing itself is malformed
(a bad `Content-Length`, a chunk size that is not hex), the request is handed over as it
is, and the parser answers it from what it has; where the parser would wait on the socket
for more (a bare LF, a chunk-size line that never ends), the verdict says so and the loop
answers.

Scanning is incremental: each call looks only at the bytes that arrived since the last
one, so a client that trickles its head a byte at a time costs linear, not quadratic, work.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

HEAD_END = b"\r\n\r\n"
BARE_LF = re.compile(rb"(?<!\r)\n")
CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
DIGITS = re.compile(rb"[0-9]{1,18}")
FRAMING_FIELD = re.compile(
    rb"\r\n(content-length|transfer-encoding|expect)[ \t]*:([^\r\n]*)", re.IGNORECASE
)
# A chunk-size line longer than this (extensions included) is not one a client sends.
MAX_CHUNK_LINE = 4096
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Verdict(enum.Enum):
    INCOMPLETE = "incomplete"  # wait for more bytes
    COMPLETE = "complete"  # the whole request is buffered
    # Hand over what is buffered now and close the connection after the answer: the body is
    # larger than the application accepts (it answers 413 without reading it), or a framing
    # header is malformed (the parser answers 400 or 501 from the head alone).
    HAND_OVER_AND_CLOSE = "hand_over_and_close"
    # Answered by the loop, because the parser would wait on the socket for the rest:
    MALFORMED = "malformed"  # 400: a bare LF in the head, a chunk-size line without end
    URI_TOO_LONG = "uri_too_long"  # 414
    HEAD_TOO_LARGE = "head_too_large"  # 431
    BODY_TOO_LARGE = "body_too_large"  # 413: chunked, so its size shows only as it arrives


@dataclass(frozen=True)
class Limits:
    request_line: int = 32 * 1024
    head: int = 64 * 1024
    body: int = 64 * 1024


class RequestFraming:
    """Framing state of the request at the start of a connection's buffer."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.reset()

    def reset(self) -> None:
        """Forget the request; the next `feed` starts a new one at the buffer's start."""
        self._scanned = 0  # head bytes already searched for its end
        self._body_start = -1
        self._content_length = -1
        self._chunked = False
        self._next_chunk = 0  # offset of the next chunk-size line
        self._chunk_bytes = 0  # decoded body bytes so far
        self._expect_line: tuple[int, int] | None = None
        self.send_continue = False

    def feed(self, buffer: bytes | bytearray) -> Verdict:
        """The verdict on `buffer`, which holds everything received for this request so
        far (it only ever grows between calls, until `reset`). After a verdict with
        `send_continue` set, the caller sends `CONTINUE` once and clears the flag."""
        if self._body_start < 0:
            verdict = self._scan_head(buffer)
            if verdict is not None:
                return verdict
        if self._chunked:
            return self._scan_chunks(buffer)
        if len(buffer) - self._body_start >= self._content_length:
            return Verdict.COMPLETE
        return Verdict.INCOMPLETE

    def without_expectation(self, buffer: bytes | bytearray) -> bytes:
        """`buffer` without its `Expect: 100-continue` line: this loop has met the
        expectation (or refused it by answering first), so the parser must not send a
        `100 Continue` of its own."""
        if self._expect_line is None:
            return bytes(buffer)
        start, end = self._expect_line
        return bytes(buffer[:start]) + bytes(buffer[end:])

    def _scan_head(self, buffer: bytes | bytearray) -> Verdict | None:
        search_from = max(0, self._scanned - 3)
        end = buffer.find(HEAD_END, search_from)
        # One empty line may precede the request line (RFC 9112 section 2.2).
        if end == 0 and buffer.startswith(b"\r\n"):
            end = buffer.find(HEAD_END, 2)
        if BARE_LF.search(buffer, max(0, self._scanned - 1), len(buffer) if end < 0 else end):
            return Verdict.MALFORMED
        if end < 0:
            self._scanned = len(buffer)
            line_end = buffer.find(b"\r\n", 2 if buffer.startswith(b"\r\n") else 0)
            if line_end < 0 and len(buffer) > self.limits.request_line:
                return Verdict.URI_TOO_LONG
            if len(buffer) > self.limits.head:
                return Verdict.HEAD_TOO_LARGE
            return Verdict.INCOMPLETE
        self._scanned = end
        if end > self.limits.head:
            return Verdict.HEAD_TOO_LARGE
        return self._read_head(buffer, end)

    def _read_head(self, buffer: bytes | bytearray, end: int) -> Verdict | None:
        start = 2 if buffer.startswith(b"\r\n") else 0
        line_end = buffer.find(b"\r\n", start)
        if line_end - start > self.limits.request_line:
            return Verdict.URI_TOO_LONG
        http_11 = bytes(buffer[start:line_end]).endswith(b"HTTP/1.1")
        self._body_start = end + len(HEAD_END)
        lengths: list[bytes] = []
        transfer_codings: list[bytes] = []
        expects_continue = False
        # One C-level pass over the header block for the three fields framing depends on.
        for field in FRAMING_FIELD.finditer(buffer, line_end, end + 2):
            name, value = field[1].lower(), field[2].strip(b" \t")
            if name == b"content-length":
                lengths.append(value)
            elif name == b"transfer-encoding":
                transfer_codings.extend(part.strip().lower() for part in value.split(b","))
            elif value.lower() == b"100-continue":
                self._expect_line = (field.start() + 2, field.end() + 2)
                expects_continue = http_11

        if transfer_codings:
            if transfer_codings[-1] != b"chunked":
                return Verdict.HAND_OVER_AND_CLOSE  # the parser answers 501 or 400
            self._chunked = True
            self._next_chunk = self._body_start
        elif lengths:
            if len(set(lengths)) != 1 or not DIGITS.fullmatch(lengths[0]):
                return Verdict.HAND_OVER_AND_CLOSE  # the parser answers 400
            self._content_length = int(lengths[0])
            if self._content_length > self.limits.body:
                return Verdict.HAND_OVER_AND_CLOSE  # the application answers 413
        else:
            self._content_length = 0
        self.send_continue = expects_continue and (
            self._chunked or self._content_length > len(buffer) - self._body_start
        )
        return None

    def _scan_chunks(self, buffer: bytes | bytearray) -> Verdict:
        while True:
            line_end = buffer.find(b"\r\n", self._next_chunk)
            if line_end < 0:
                if len(buffer) - self._next_chunk > MAX_CHUNK_LINE:
                    return Verdict.MALFORMED
                return Verdict.INCOMPLETE
            size_text = bytes(buffer[self._next_chunk:line_end]).split(b";", 1)[0].strip()
            if not CHUNK_SIZE.fullmatch(size_text):
                return Verdict.HAND_OVER_AND_CLOSE
            size = int(size_text, 16)
            if size == 0:
                return self._scan_trailers(buffer, line_end + 2)
            if self._chunk_bytes + size > self.limits.body:
                return Verdict.BODY_TOO_LARGE
            chunk_end = line_end + 2 + size + 2
            if len(buffer) < chunk_end:
                return Verdict.INCOMPLETE
            self._chunk_bytes += size
            self._next_chunk = chunk_end

    def _scan_trailers(self, buffer: bytes | bytearray, start: int) -> Verdict:
        if buffer[start:start + 2] == b"\r\n":
            return Verdict.COMPLETE
        end = buffer.find(HEAD_END, start)
        if end < 0:
            if len(buffer) - start > self.limits.head:
                return Verdict.HEAD_TOO_LARGE
            return Verdict.INCOMPLETE
        return Verdict.COMPLETE
