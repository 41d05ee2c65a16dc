#!/usr/bin/env python3
"""A robust HTTP/1.0 client for `wrench explore`'s tests: it stops reading at
Content-Length, bounds every wait with a timeout, and retries a failed request on a
new connection (up to 5 attempts)."""
import socket
import sys
import time


def fetch(host, port):
    with socket.create_connection((host, port), timeout=2) as s:
        s.settimeout(2)
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("closed before the headers")
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("closed before the whole body")
            body += chunk
        return body


for attempt in range(5):
    try:
        print(len(fetch(sys.argv[1], int(sys.argv[2]))))
        sys.exit(0)
    except (OSError, ConnectionError) as e:
        print("attempt", attempt + 1, "failed:", e, file=sys.stderr)
        time.sleep(0.1)
sys.exit(1)
