"""Framing of the channel between the console and a runner process.

Every frame is a 5-byte header, ``>IB`` (payload length, kind), then the payload:

- kind ``J``: one UTF-8 JSON object (commands, replies, progress, final results);
- kind ``T``: the raw UTF-8 text of one streamed token piece, nothing else.

Why JSON and not pickle: the runner parses model files and runs llama.cpp, so the console
treats it as less trusted than itself. Unpickling its output would let a compromised runner run
code inside the console; JSON cannot. Why a separate text kind: tokens are the only
high-rate traffic, and a ``T`` frame costs one ``struct.pack`` and one ``encode`` on the runner
side and one ``decode`` on the console side (a few microseconds, against the 0.2 ms budget in
DESIGN.md), with no JSON at all. One generation runs at a time per runner and the stream is
ordered, so text frames need no id: they belong to the generation in progress.

A frame longer than :data:`MAX_FRAME` is a protocol error (a corrupt length must not make the
console allocate gigabytes).
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from typing import Any, BinaryIO, cast

HEADER = struct.Struct(">IB")
"""Payload length (unsigned 32-bit, big-endian) and kind (one byte)."""

KIND_JSON = ord("J")
KIND_TEXT = ord("T")
MAX_FRAME = 64 * 1024 * 1024

Message = dict[str, Any]
"""A decoded ``J`` frame."""


class ChannelClosed(Exception):
    """The other end of the channel is gone (EOF, reset or a closed socket)."""


class FrameError(Exception):
    """A frame that breaks the protocol: unknown kind, oversize length or bad JSON."""


def encode_json(message: Message) -> bytes:
    """Return the ``J`` frame for ``message``.

    Args:
        message: a JSON-serialisable mapping.

    Returns:
        Header and payload, ready to send.
    """
    payload = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return HEADER.pack(len(payload), KIND_JSON) + payload


def encode_text(text: str) -> bytes:
    """Return the ``T`` frame carrying one streamed piece of text.

    Args:
        text: the piece.

    Returns:
        Header and payload, ready to send.
    """
    payload = text.encode("utf-8")
    return HEADER.pack(len(payload), KIND_TEXT) + payload


class FrameWriter:
    """Sends frames on a connected socket; safe to share between threads.

    Args:
        sock: a connected stream socket (one end of a socketpair).
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._lock = threading.Lock()

    def send_bytes(self, frame: bytes) -> None:
        """Send one encoded frame whole.

        Args:
            frame: from :func:`encode_json` or :func:`encode_text`.

        Raises:
            ChannelClosed: the other end is gone.
        """
        with self._lock:
            try:
                self._sock.sendall(frame)
            except OSError as exc:  # EPIPE, ECONNRESET, EBADF after close
                raise ChannelClosed(str(exc)) from exc

    def send(self, message: Message) -> None:
        """Send a JSON message (see :meth:`send_bytes`)."""
        self.send_bytes(encode_json(message))

    def send_text(self, text: str) -> None:
        """Send a streamed text piece (see :meth:`send_bytes`)."""
        self.send_bytes(encode_text(text))


class FrameReader:
    """Reads frames from a connected socket; one reader thread per socket.

    Args:
        sock: a connected stream socket.
    """

    def __init__(self, sock: socket.socket) -> None:
        # typeshed types makefile("rb", buffering=n) as IOBase; it is a BufferedReader.
        self._file = cast(BinaryIO, sock.makefile("rb", buffering=64 * 1024))

    def read(self) -> Message | str | None:
        """Block until the next frame arrives.

        Returns:
            A dict for a ``J`` frame, a str for a ``T`` frame, None at a clean end of stream.

        Raises:
            FrameError: the frame breaks the protocol, or the stream ends inside a frame.
        """
        try:
            header = self._file.read(HEADER.size)
        except OSError:
            return None
        if not header:
            return None
        if len(header) < HEADER.size:
            raise FrameError("stream ended inside a frame header")
        length, kind = HEADER.unpack(header)
        if length > MAX_FRAME:
            raise FrameError(f"frame of {length} bytes exceeds the {MAX_FRAME}-byte limit")
        try:
            payload = self._file.read(length) if length else b""
        except OSError:
            return None
        if len(payload) < length:
            raise FrameError("stream ended inside a frame")
        if kind == KIND_TEXT:
            return payload.decode("utf-8", errors="replace")
        if kind != KIND_JSON:
            raise FrameError(f"unknown frame kind {kind!r}")
        try:
            message = json.loads(payload)
        except ValueError as exc:
            raise FrameError(f"bad JSON in frame: {exc}") from exc
        if not isinstance(message, dict):
            raise FrameError("a JSON frame must hold an object")
        return message

    def close(self) -> None:
        """Close the reader's file object (the socket itself stays open)."""
        self._file.close()
