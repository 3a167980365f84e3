"""Reading the HTTP/1.1 requests of a relayed connection: where each starts, and the limits on its head.

The relay feeds every byte a client sends to llhttp (through httptools, the parser
uvicorn uses in the replicas), so it knows where requests begin (to replay one on
another replica) and refuses a head over the limits before a replica reads it:
a request line over ``max_url_bytes`` gets 414, more than ``max_headers`` header
fields or over ``max_header_bytes`` of them 431, and what llhttp cannot parse 400.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from http import HTTPStatus

import httptools

__all__ = ["HeadLimits", "RequestRefused", "RequestReader", "error_response"]


@dataclass(frozen=True)
class HeadLimits:
    """What the head of one request may hold (the body's limit is the app's)."""

    max_url_bytes: int = 8 * 1024
    max_header_bytes: int = 16 * 1024
    max_headers: int = 100


class RequestRefused(Exception):
    """A request the relay answers itself with ``status`` (and then closes the connection)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def error_response(status: int, message: str) -> bytes:
    """A complete HTTP/1.1 response with a JSON ``{"error": message}`` body that closes the connection."""
    body = json.dumps({"error": message}).encode()
    head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode() + body


class RequestReader:
    """Parses one connection's requests as they arrive.

    After :meth:`feed`, ``began`` says whether a request began in that chunk, and
    ``at_start`` whether the chunk starts with one (no earlier request ended in it),
    so that the chunk can be replayed from a request's first byte.
    """

    def __init__(self, limits: HeadLimits) -> None:
        self.limits = limits
        self.began = self.at_start = False
        self._ended = False
        self._in_head = False
        self._url = self._header_bytes = self._headers = self._head_fed = 0
        self._parser = httptools.HttpRequestParser(self)

    def feed(self, data: bytes) -> None:
        """Parse ``data``.

        Raises:
            RequestRefused: When the head is over a limit (414, 431) or the bytes are not HTTP/1.x (400).
        """
        self.began = self.at_start = self._ended = False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # llhttp resumes parsing after it; the app has no protocol to upgrade to
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, RequestRefused):
                raise exc.__context__ from None
            raise RequestRefused(400, f"malformed HTTP request: {exc}") from None
        if self._in_head:  # a head that goes on past this chunk: bound it before it is complete
            self._head_fed += len(data)
            if self._head_fed > self.limits.max_url_bytes + self.limits.max_header_bytes:
                raise RequestRefused(431, f"request head over {self._head_fed} bytes")

    # llhttp's callbacks (through httptools)

    def on_message_begin(self) -> None:
        self.began = True
        self.at_start = self.at_start or not self._ended
        self._in_head = True
        self._url = self._header_bytes = self._headers = self._head_fed = 0

    def on_url(self, url: bytes) -> None:
        self._url += len(url)
        if self._url > self.limits.max_url_bytes:
            raise RequestRefused(414, f"request target over the limit of {self.limits.max_url_bytes} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers += 1
        self._header_bytes += len(name) + len(value) + 4
        if self._headers > self.limits.max_headers:
            raise RequestRefused(431, f"more than {self.limits.max_headers} header fields")
        if self._header_bytes > self.limits.max_header_bytes:
            raise RequestRefused(431, f"header fields over the limit of {self.limits.max_header_bytes} bytes")

    def on_headers_complete(self) -> None:
        self._in_head = False

    def on_message_complete(self) -> None:
        self._ended = True
