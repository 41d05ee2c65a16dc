#!/usr/bin/env python3
"""The small-message ends of scripts/serve-bench.sh (its bulk transfers are
scripts/loss-bench-transfer.py's).

  serve-bench-client.py echo HOST PORT
      Accepts connections and sends back every byte it receives, until the client
      closes. One thread, non-blocking sockets, so accepting costs no thread start.
  serve-bench-client.py conns HOST PORT SECONDS MAX
      Connects, sends one byte, reads the byte back and closes, one connection after
      the other, for SECONDS or MAX connections, whichever ends first; prints the
      connections per second, or "error ..." and exits non-zero.
  serve-bench-client.py rtt HOST PORT COUNT TIMEOUT
      One connection: 100 round trips of one byte to warm up, then COUNT timed ones;
      prints the median and the 99th percentile in microseconds ("P50 P99"), or
      "timeout" / "error ..." and exits non-zero.
"""
import selectors
import socket
import sys
import time


def echo(host, port):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    srv.listen(1024)
    srv.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(srv, selectors.EVENT_READ)
    while True:
        for key, _ in sel.select():
            sock = key.fileobj
            if sock is srv:
                try:
                    conn, _ = srv.accept()
                except OSError:
                    continue
                conn.setblocking(False)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sel.register(conn, selectors.EVENT_READ)
                continue
            try:
                data = sock.recv(65536)
                if data:
                    sock.sendall(data)  # a few bytes: the send buffer takes them
                    continue
            except OSError:
                pass
            sel.unregister(sock)
            sock.close()


def conns(host, port, seconds, most):
    start = time.monotonic()
    deadline = start + seconds
    n = 0
    while n < most and time.monotonic() < deadline:
        s = socket.create_connection((host, port), timeout=5)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"x")
        if s.recv(1) != b"x":
            raise RuntimeError(f"connection {n + 1}: no echo")
        s.close()
        n += 1
    return n / (time.monotonic() - start)


def rtt(host, port, count, timeout):
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    deadline = time.monotonic() + timeout
    samples = []
    for i in range(100 + count):
        if time.monotonic() > deadline:
            raise socket.timeout()
        t0 = time.perf_counter_ns()
        s.sendall(b"x")
        if s.recv(1) != b"x":
            raise RuntimeError("no echo")
        if i >= 100:
            samples.append(time.perf_counter_ns() - t0)
    s.close()
    samples.sort()
    return samples[len(samples) // 2] / 1000, samples[min(len(samples) - 1, len(samples) * 99 // 100)] / 1000


def main():
    args = sys.argv[1:]
    try:
        if len(args) == 3 and args[0] == "echo":
            echo(args[1], int(args[2]))
            return 0
        if len(args) == 5 and args[0] == "conns":
            print(f"{conns(args[1], int(args[2]), float(args[3]), int(args[4])):.0f}")
            return 0
        if len(args) == 5 and args[0] == "rtt":
            p50, p99 = rtt(args[1], int(args[2]), int(args[3]), float(args[4]))
            print(f"{p50:.1f} {p99:.1f}")
            return 0
    except socket.timeout:
        print("timeout")
        return 1
    except (OSError, RuntimeError) as e:
        print(f"error {e}")
        return 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
