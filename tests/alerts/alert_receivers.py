"""Local receiving endpoints for alert tests: an HTTP server and a minimal SMTP server, each
in a thread on 127.0.0.1, recording what they receive."""

from __future__ import annotations

import base64
import email
import email.policy
import http.server
import json
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from typing import Any


class HttpReceiver:
    """Records each POST (path, JSON body); answers ``status`` (settable)."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, Any]] = []
        self.status = 200
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status = receiver.status
                if status < 300:
                    receiver.posts.append((self.path, json.loads(body)))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def bodies(self, path: str) -> list[Any]:
        return [body for p, body in self.posts if p == path]


class SmtpReceiver:
    """Just enough SMTP (EHLO, AUTH PLAIN, MAIL, RCPT, DATA, QUIT) to receive messages."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.logins: list[tuple[str, str]] = []
        receiver = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str) -> None:
                self.wfile.write(line.encode() + b"\r\n")
                self.wfile.flush()

            def handle(self) -> None:
                self.reply("220 localhost test SMTP")
                sender, rcpts = "", list[str]()
                while True:
                    raw = self.rfile.readline()
                    if not raw:
                        return
                    line = raw.decode().rstrip("\r\n")
                    verb = line.split(" ", 1)[0].upper()
                    if verb in ("EHLO", "HELO"):
                        self.reply("250-localhost")
                        self.reply("250 AUTH PLAIN")
                    elif verb == "AUTH":
                        parts = line.split(" ")
                        _, user, password = base64.b64decode(parts[2]).decode().split("\0")
                        receiver.logins.append((user, password))
                        self.reply("235 2.7.0 Authentication successful")
                    elif verb == "MAIL":
                        sender, rcpts = line.split(":", 1)[1].strip(" <>"), []
                        self.reply("250 OK")
                    elif verb == "RCPT":
                        rcpts.append(line.split(":", 1)[1].strip(" <>"))
                        self.reply("250 OK")
                    elif verb == "DATA":
                        self.reply("354 End data with <CR><LF>.<CR><LF>")
                        data = b""
                        while True:
                            chunk = self.rfile.readline()
                            if chunk in (b".\r\n", b".\n", b""):
                                break
                            data += chunk[1:] if chunk.startswith(b"..") else chunk
                        message = email.message_from_bytes(data, policy=email.policy.default)
                        receiver.messages.append(message)  # type: ignore[arg-type]
                        receiver.envelopes.append((sender, rcpts))
                        self.reply("250 OK queued")
                    elif verb == "QUIT":
                        self.reply("221 Bye")
                        return
                    elif verb in ("RSET", "NOOP"):
                        self.reply("250 OK")
                    else:
                        self.reply("502 not implemented")

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@contextmanager
def receivers() -> Iterator[tuple[HttpReceiver, SmtpReceiver]]:
    http_rx, smtp_rx = HttpReceiver(), SmtpReceiver()
    http_rx.thread.start()
    smtp_rx.thread.start()
    try:
        yield http_rx, smtp_rx
    finally:
        for server in (http_rx.server, smtp_rx.server):
            server.shutdown()
            server.server_close()
