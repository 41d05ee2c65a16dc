#!/usr/bin/env python3
"""A deliberately fragile HTTP/1.0 client for `wrench explore`'s tests: it reads the
response until end-of-file with no read timeout, so it hangs for ever when the
server's FIN never arrives, and it does not retry a reset."""
import socket
import sys

s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
s.sendall(b"GET / HTTP/1.0\r\n\r\n")
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
print(len(data))
