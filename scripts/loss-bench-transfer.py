#!/usr/bin/env python3
"""The two ends of the bulk transfers of scripts/loss-bench.sh and scripts/serve-bench.sh.

  loss-bench-transfer.py serve HOST PORT
      Accepts connections; each sends one command byte and an 8-byte size:
      'D' (download): the server sends that many bytes and closes;
      'U' (upload): the server reads until EOF, then answers 'K' and closes;
      'S' (sized upload): the server reads that many bytes, then answers 'K' and closes.
  loss-bench-transfer.py get|put|send HOST PORT BYTES TIMEOUT
      One transfer of BYTES; prints the seconds it took, from before connect() to the
      last byte (get) or to the server's 'K' (put, send), or "timeout" / "error ..."
      and exits non-zero. put shuts its sending side down after the last byte (a FIN
      the server waits for); send does not, for proxies that end the whole connection
      when one side shuts down.

Both ends send with the congestion control named by the environment variable
LOSS_BENCH_CC (for example "cubic"), else with the kernel's default.
"""
import os
import socket
import struct
import sys
import threading
import time

CHUNK = 64 * 1024
PAYLOAD = bytes(range(256)) * (CHUNK // 256)


def set_congestion_control(sock):
    cc = os.environ.get("LOSS_BENCH_CC")
    if cc:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc.encode())


def serve_one(conn):
    try:
        set_congestion_control(conn)
        serve_commands(conn)
    except OSError:
        pass  # the client gave up (its timeout) and closed


def serve_commands(conn):
    with conn:
        conn.settimeout(600)
        head = b""
        while len(head) < 9:
            more = conn.recv(9 - len(head))
            if not more:
                return
            head += more
        cmd, size = head[:1], struct.unpack("!Q", head[1:])[0]
        if cmd == b"D":
            sent = 0
            while sent < size:
                n = min(CHUNK, size - sent)
                conn.sendall(PAYLOAD[:n])
                sent += n
        elif cmd == b"U":
            while conn.recv(CHUNK):
                pass
            conn.sendall(b"K")
        elif cmd == b"S":
            got = 0
            while got < size:
                data = conn.recv(min(CHUNK, size - got))
                if not data:
                    return
                got += len(data)
            conn.sendall(b"K")


def serve(host, port):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    srv.listen(16)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve_one, args=(conn,), daemon=True).start()


def transfer(kind, host, port, size, timeout):
    start = time.monotonic()
    deadline = start + timeout
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    set_congestion_control(s)
    s.connect((host, port))
    if kind == "get":
        s.sendall(b"D" + struct.pack("!Q", size))
        got = 0
        while time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            data = s.recv(CHUNK)
            if not data:
                break
            got += len(data)
        if got != size:
            raise RuntimeError(f"received {got} of {size} bytes")
    else:
        s.sendall((b"U" if kind == "put" else b"S") + struct.pack("!Q", size))
        sent = 0
        while sent < size and time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            n = min(CHUNK, size - sent)
            s.sendall(PAYLOAD[:n])
            sent += n
        if kind == "put":
            s.shutdown(socket.SHUT_WR)
        s.settimeout(max(0.01, deadline - time.monotonic()))
        if s.recv(1) != b"K":
            raise RuntimeError("no answer from the server")
    s.close()
    return time.monotonic() - start


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
        return 0
    if len(sys.argv) == 6 and sys.argv[1] in ("get", "put", "send"):
        try:
            print(f"{transfer(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])):.3f}")
            return 0
        except socket.timeout:
            print("timeout")
        except (OSError, RuntimeError) as e:
            print(f"error {e}")
        return 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
