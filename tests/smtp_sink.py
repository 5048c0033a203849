"""A small real SMTP server for tests, run in its own process:

    python -m tests.smtp_sink PORT DIRECTORY [USER PASSWORD]

Speaks enough SMTP for smtplib (EHLO/HELO, AUTH PLAIN and LOGIN when a user is given,
MAIL, RCPT, DATA with dot-unstuffing, RSET, NOOP, QUIT) and writes each accepted message
to DIRECTORY as ``<n>.eml``. Prints ``ready`` once listening. No mocks: the daemon talks
to it over TCP on loopback like to any server.
"""

from __future__ import annotations

import base64
import socketserver
import sys
from pathlib import Path

COUNTER = [0]


class Handler(socketserver.StreamRequestHandler):
    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self) -> None:
        server: Sink = self.server  # type: ignore[assignment]
        authed = server.user is None
        sender, recipients = None, []
        self.reply("220 sink ESMTP")
        while True:
            raw = self.rfile.readline()
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            verb = line[:4].upper()
            if verb in ("EHLO", "HELO"):
                if verb == "EHLO":
                    self.wfile.write(b"250-sink\r\n")
                    if server.user is not None:
                        self.wfile.write(b"250-AUTH PLAIN LOGIN\r\n")
                    self.reply("250 8BITMIME")
                else:
                    self.reply("250 sink")
            elif verb == "AUTH":
                parts = line.split()
                if parts[1].upper() == "PLAIN":
                    blob = parts[2] if len(parts) > 2 else None
                    if blob is None:
                        self.reply("334 ")
                        blob = self.rfile.readline().decode().strip()
                    _, user, password = base64.b64decode(blob).decode().split("\0")
                else:
                    self.reply("334 VXNlcm5hbWU6")
                    user = base64.b64decode(self.rfile.readline().strip()).decode()
                    self.reply("334 UGFzc3dvcmQ6")
                    password = base64.b64decode(self.rfile.readline().strip()).decode()
                if (user, password) == (server.user, server.password):
                    authed = True
                    self.reply("235 ok")
                else:
                    self.reply("535 bad credentials")
            elif verb == "MAIL":
                if not authed:
                    self.reply("530 authentication required")
                    continue
                sender, recipients = line[10:].strip(), []
                self.reply("250 ok")
            elif verb == "RCPT":
                recipients.append(line[8:].strip())
                self.reply("250 ok")
            elif verb == "DATA":
                self.reply("354 go on")
                lines = []
                while True:
                    data = self.rfile.readline()
                    if data in (b".\r\n", b".\n", b""):
                        break
                    lines.append(data[1:] if data.startswith(b"..") else data)
                COUNTER[0] += 1
                header = f"X-Sink-From: {sender}\r\nX-Sink-To: {','.join(recipients)}\r\n"
                path = server.directory / f"{COUNTER[0]}.eml"
                path.with_suffix(".tmp").write_bytes(header.encode() + b"".join(lines))
                path.with_suffix(".tmp").rename(path)
                self.reply("250 queued")
            elif verb == "RSET":
                sender, recipients = None, []
                self.reply("250 ok")
            elif verb == "NOOP":
                self.reply("250 ok")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 not implemented")


class Sink(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, port: int, directory: Path, user: str | None, password: str | None):
        super().__init__(("127.0.0.1", port), Handler)
        self.directory, self.user, self.password = directory, user, password


def main() -> None:
    port, directory = int(sys.argv[1]), Path(sys.argv[2])
    user = sys.argv[3] if len(sys.argv) > 3 else None
    password = sys.argv[4] if len(sys.argv) > 4 else None
    directory.mkdir(parents=True, exist_ok=True)
    with Sink(port, directory, user, password) as server:
        print(f"ready {server.server_address[1]}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
