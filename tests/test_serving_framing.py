"""Unit tests of `todo.serving.framing`: when a request in a buffer is complete.

The verdict must not depend on how the bytes were split across reads, so every case is fed
whole, a byte at a time, and in a few random splits.
"""

from __future__ import annotations

import random

import pytest

from todo.serving.framing import Limits, RequestFraming, Verdict

LIMITS = Limits(request_line=100, head=300, body=50)
GET = b"GET /api/u/tasks HTTP/1.1\r\nHost: x\r\n\r\n"


def post(body: bytes, *headers: bytes) -> bytes:
    head = b"POST /api/u/tasks HTTP/1.1\r\nHost: x\r\n" + b"".join(h + b"\r\n" for h in headers)
    return head + b"\r\n" + body


def chunked(*chunks: bytes, trailers: bytes = b"") -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks)
    return post(body + b"0\r\n" + trailers + b"\r\n", b"Transfer-Encoding: chunked")


def verdicts(data: bytes, splits: list[int]) -> list[Verdict]:
    """Feed `data` in pieces ending at `splits` (and at its end); the verdict after each."""
    framing = RequestFraming(LIMITS)
    seen = []
    for end in [*splits, len(data)]:
        seen.append(framing.feed(data[:end]))
        if seen[-1] is not Verdict.INCOMPLETE:
            break
    return seen


def final_verdict(data: bytes) -> Verdict:
    """The verdict on `data`, checked to be the same however the bytes arrive."""
    whole = verdicts(data, [])[-1]
    byte_by_byte = verdicts(data, list(range(1, len(data))))[-1]
    assert byte_by_byte is whole
    rng = random.Random(data)
    for _ in range(5):
        splits = sorted(rng.sample(range(1, len(data)), min(3, len(data) - 1)))
        assert verdicts(data, splits)[-1] is whole
    return whole


@pytest.mark.parametrize(
    ("data", "verdict"),
    [
        (GET, Verdict.COMPLETE),
        (GET[:-1], Verdict.INCOMPLETE),
        (b"\r\n" + GET, Verdict.COMPLETE),  # one empty line before the request line is allowed
        (b"GET / HTTP/1.0\r\n\r\n", Verdict.COMPLETE),  # no header fields at all
        (post(b"{}", b"Content-Length: 2"), Verdict.COMPLETE),
        (post(b"{", b"Content-Length: 2"), Verdict.INCOMPLETE),
        (post(b"", b"content-length:  0 "), Verdict.COMPLETE),
        (post(b"x" * 50, b"Content-Length: 50"), Verdict.COMPLETE),  # at the limit
        (post(b"", b"Content-Length: 51"), Verdict.HAND_OVER_AND_CLOSE),  # over: the app's 413
        (post(b"", b"Content-Length: 99999999999999999999999"), Verdict.HAND_OVER_AND_CLOSE),
        (post(b"", b"Content-Length: -1"), Verdict.HAND_OVER_AND_CLOSE),  # the parser's 400
        (post(b"", b"Content-Length: 1, 2"), Verdict.HAND_OVER_AND_CLOSE),
        (post(b"ab", b"Content-Length: 2", b"Content-Length: 3"), Verdict.HAND_OVER_AND_CLOSE),
        (post(b"", b"Transfer-Encoding: gzip"), Verdict.HAND_OVER_AND_CLOSE),  # the parser's 501
        (chunked(b"hello", b" world"), Verdict.COMPLETE),
        (chunked(b"hello")[:-2], Verdict.INCOMPLETE),
        (chunked(b"hello", trailers=b"X-Checksum: 1\r\n"), Verdict.COMPLETE),
        (chunked(b"a" * 30, b"b" * 20), Verdict.COMPLETE),  # 50 decoded bytes: at the limit
        (chunked(b"a" * 30, b"b" * 21), Verdict.BODY_TOO_LARGE),
        (post(b"zz\r\n", b"Transfer-Encoding: chunked"), Verdict.HAND_OVER_AND_CLOSE),
        (post(b"5" * 5000, b"Transfer-Encoding: chunked"), Verdict.MALFORMED),
        (b"GET / HTTP/1.1\nHost: x\r\n\r\n", Verdict.MALFORMED),  # bare LF
        (b"GET / HTTP/1.1\r\nHost: x\n\n", Verdict.MALFORMED),
        (b"GET /" + b"a" * 120 + b" HTTP/1.1\r\n\r\n", Verdict.URI_TOO_LONG),
        (b"GET /" + b"a" * 120, Verdict.URI_TOO_LONG),  # no end of line in sight
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 400, Verdict.HEAD_TOO_LARGE),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 290 + b"\r\n\r\n", Verdict.HEAD_TOO_LARGE),
    ],
)
def test_verdicts(data: bytes, verdict: Verdict) -> None:
    assert final_verdict(data) is verdict


def test_a_body_with_newlines_is_not_a_bare_lf_in_the_head() -> None:
    assert final_verdict(post(b"a\nb\n", b"Content-Length: 4")) is Verdict.COMPLETE


def test_pipelined_bytes_after_a_complete_request_do_not_change_the_verdict() -> None:
    assert RequestFraming(LIMITS).feed(GET + b"GET / HT") is Verdict.COMPLETE


def test_continue_is_asked_for_once_and_only_for_a_body_still_to_come() -> None:
    framing = RequestFraming(LIMITS)
    head = post(b"", b"Content-Length: 2", b"Expect: 100-continue")
    assert framing.feed(head) is Verdict.INCOMPLETE
    assert framing.send_continue
    framing.send_continue = False
    assert framing.feed(head + b"{}") is Verdict.COMPLETE
    assert not framing.send_continue

    already_sent = RequestFraming(LIMITS)
    assert already_sent.feed(head + b"{}") is Verdict.COMPLETE
    assert not already_sent.send_continue

    http_10 = RequestFraming(LIMITS)
    http_10.feed(head.replace(b"HTTP/1.1", b"HTTP/1.0"))
    assert not http_10.send_continue  # RFC 9110: ignored in HTTP/1.0


def test_a_body_over_the_limit_is_not_invited() -> None:
    framing = RequestFraming(LIMITS)
    head = post(b"", b"Content-Length: 51", b"Expect: 100-continue")
    assert framing.feed(head) is Verdict.HAND_OVER_AND_CLOSE
    assert not framing.send_continue


def test_the_expectation_is_removed_before_the_parser_sees_the_request() -> None:
    framing = RequestFraming(LIMITS)
    request = post(b"{}", b"Content-Length: 2", b"Expect: 100-continue", b"X-After: 1")
    assert framing.feed(request) is Verdict.COMPLETE
    assert framing.without_expectation(request) == post(
        b"{}", b"Content-Length: 2", b"X-After: 1"
    )
    assert RequestFraming(LIMITS).without_expectation(GET) == GET


def test_reset_starts_the_next_request() -> None:
    framing = RequestFraming(LIMITS)
    assert framing.feed(post(b"{}", b"Content-Length: 2")) is Verdict.COMPLETE
    framing.reset()
    assert framing.feed(GET[:10]) is Verdict.INCOMPLETE
    assert framing.feed(GET) is Verdict.COMPLETE
