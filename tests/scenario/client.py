#!/usr/bin/env python3
"""A scripted TCP client for the scenario tests: runs inside `wrench exec`,
dials the gateway, does one exchange, and prints what it saw as one JSON line."""
import errno
import json
import socket
import struct
import sys
import time

STATES = {1: "ESTABLISHED", 2: "SYN-SENT", 3: "SYN-RECEIVED", 4: "FIN-WAIT-1",
          5: "FIN-WAIT-2", 6: "TIME-WAIT", 7: "CLOSED", 8: "CLOSE-WAIT", 9: "LAST-ACK",
          10: "LISTEN", 11: "CLOSING"}


def state(s):
    info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    return STATES.get(info[0], str(info[0]))


def main():
    mode, host, port, expect = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    out = {"mode": mode}
    t0 = time.monotonic()
    s = socket.create_connection((host, port), timeout=10)
    out["connect_s"] = time.monotonic() - t0
    upload = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    got = 0
    t_data = None
    s.settimeout(float(sys.argv[6]) if len(sys.argv) > 6 else 10)
    try:
        t_up = time.monotonic()
        s.sendall(b"x" * upload + b"GET\n")
        out["upload_s"] = time.monotonic() - t_up
        if mode in ("half-close", "fin-wait-2"):
            s.shutdown(socket.SHUT_WR)
        while True:
            if got == expect and mode in ("close-first", "sim-close"):
                break
            if got == expect and "state_at_data" not in out:
                out["state_at_data"] = state(s)
                t_data = time.monotonic()
            b = s.recv(65536)
            if not b:
                out["eof"] = True
                break
            got += len(b)
    except socket.timeout:
        out["error"] = "timeout"
    except OSError as e:
        out["error"] = errno.errorcode.get(e.errno, str(e.errno))
    out["bytes"] = got
    if t_data is not None and out.get("eof"):
        out["eof_after_data_s"] = time.monotonic() - t_data
    try:
        out["state"] = state(s)
    except OSError:
        out["state"] = "?"
    if mode in ("close-wait",):
        time.sleep(0.5)
        out["state_later"] = state(s)
    if mode == "fin-wait-2":
        out["state_later"] = state(s)
    if mode != "close-wait":
        s.close()
    if mode in ("close-first", "sim-close"):
        time.sleep(2.5)  # TIME-WAIT re-ACKs, crossing FINs: let them happen
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
