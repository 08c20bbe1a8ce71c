#!/usr/bin/env python3
"""A loopback HTTP/1.1 proxy that injects faults in front of nginx, for the HTTP tests.

One request per client connection (the request goes upstream with "Connection: close").
The first path segments choose the fault; the rest is the upstream path:

  /pass/<path>            forward unchanged
  /cut/<N>/<path>         the connection of the first answer per (method, path) is closed
                          after N body bytes; later ones pass
  /cutparts/<N>/<path>    as cut, once per (method, path, end of the Range): every part of
                          a parallel download is cut once (its resume keeps the end)
  /cutnr/<N>/<path>       as cut, and Range headers are dropped, so nginx answers 200
                          with the whole object every time
  /rcut/<N>/<path>        the first request per (method, path) is reset after N bytes of
                          its request body went upstream
  /once503/<path>         the first request per (method, path) gets a 503 with an XML
                          error body and Retry-After: 0; later ones pass
  /always503/<path>       every request gets a 503
  /reset/<path>           the first request per (method, path) is reset without answer
  /burst503/<N>/<path>    the first N requests per (method, path) get the 503 above
  /stall/<N>/<path>       the first answer per (method, path) stops after N body bytes and
                          the connection stays open, silent, until the client closes it
  /stallall/<N>/<path>    as stall, for every answer
  /lenplus/<N>/<path>     the first answer per (method, path) advertises a Content-Length N
                          bytes larger than its body, sends the body and closes
  /lenminus/<N>/<path>    the first answer per (method, path) advertises a Content-Length N
                          bytes smaller and sends only that many bytes: a short body that
                          looks complete
  /flip/<N>/<path>        every answer has bit 0 of body byte N flipped (when it has one)
  /flip1/<N>/<path>       as flip, only the first answer per (method, path)
  /stallhead/<path>       every request is read and never answered (at most STALL_MAX s)
  /echo/<path>            answered by the proxy itself: 200 with the body
                          "<METHOD> <path>\n<request body>" (Content-Length bodies only)
                          and X-Echo-Test: <the request's X-Test header>

With --all MODE[/N] the path is forwarded unchanged and MODE applies to every request
(for signed requests, e.g. S3 SigV4, whose path must not change); --match SUBSTR limits it
to requests whose target (path and query) contains SUBSTR, the others pass.

Every request is logged as one line: METHOD PATH range=<Range or -> action=<what>.
"""
import argparse
import fcntl
import socket
import socketserver
import struct
import termios
import threading
import time

STATE = {}
STATE_LOCK = threading.Lock()
ARGS = None
LOG_LOCK = threading.Lock()
HEAD_MAX = 1 << 20
STALL_MAX = 300


def first_time(key):
    with STATE_LOCK:
        if key in STATE:
            return False
        STATE[key] = True
        return True


def log(line):
    with LOG_LOCK:
        with open(ARGS.log, "a") as f:
            f.write(line + "\n")


def drain(sock, timeout=2.0):
    """Waits until the peer acknowledged everything sent: a reset discards the send queue,
    so without this the client would get fewer bytes than the cut promises."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            left = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
        except OSError:
            return
        if left == 0:
            return
        time.sleep(0.001)


def reset(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass


def read_head(sock, buf):
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return None, buf
        buf += chunk
        if len(buf) > HEAD_MAX:
            return None, buf
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head, rest


def pump(src, dst, limit=None, fired=None, rate=None):
    """Copies src to dst; with limit, stops after limit bytes and shuts dst down; with rate,
    at about rate bytes per second."""
    sent = 0
    start = time.monotonic()
    try:
        while True:
            data = src.recv(16384 if rate else 262144)
            if not data:
                break
            if rate:
                ahead = start + (sent + len(data)) / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            if limit is not None and sent + len(data) >= limit:
                dst.sendall(data[: limit - sent])
                fired.set()
                dst.shutdown(socket.SHUT_RDWR)
                return
            dst.sendall(data)
            sent += len(data)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def hold(sock):
    """Keeps a connection open and silent until the peer closes it (or STALL_MAX s)."""
    sock.settimeout(STALL_MAX)
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass
    sock.close()


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        c = self.request
        head, rest = read_head(c, b"")
        if head is None:
            return
        lines = head.split(b"\r\n")
        try:
            method, target, version = lines[0].decode("latin-1").split(" ")
        except ValueError:
            return
        headers = lines[1:]
        hmap = {}
        for h in headers:
            name, _, value = h.decode("latin-1").partition(":")
            hmap[name.strip().lower()] = value.strip()
        rng = hmap.get("range", "-")
        if ARGS.all:
            parts = [""] + ARGS.all.split("/") + target.split("/")[1:]
            if ARGS.match and ARGS.match not in target:
                parts[1] = "pass"
        else:
            parts = target.split("/")
        mode = parts[1] if len(parts) > 1 else ""
        cut_after = None
        if mode in ("cut", "cutparts", "cutnr", "rcut", "burst503", "slowup") + BODY_MODES:
            try:
                cut_after = int(parts[2])
            except (IndexError, ValueError):
                return
            path = "/" + "/".join(parts[3:])
        else:
            path = "/" + "/".join(parts[2:])
        if ARGS.all:
            path = target

        action = "pass"
        body_fault = None  # (mode, N) applied to the answer's body by the copy loop
        if mode == "burst503":
            with STATE_LOCK:
                k = (mode, method, path)
                STATE[k] = STATE.get(k, 0) + 1
                if STATE[k] <= cut_after:
                    action = "503"
            cut_after = None
        elif mode in BODY_MODES:
            if mode in ("flip", "stallall") or first_time((mode, method, path)):
                body_fault = (mode, cut_after)
                action = "%s%d" % (mode, cut_after)
            cut_after = None
        elif mode == "always503" or (mode == "once503" and first_time((mode, method, path))):
            action = "503"
        elif mode == "reset" and first_time((mode, method, path)):
            action = "reset"
        elif mode == "stallhead":
            action = "stallhead"
        elif mode == "slowup":
            action = "slowup%d" % cut_after
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            cut_after = None
        elif mode == "rcut":
            if first_time((mode, method, path)):
                action = "rcut%d" % cut_after
            cut_after = None
        elif mode in ("cut", "cutparts", "cutnr"):
            key = (mode, method, path)
            if mode == "cutparts":
                key = key + (rng.rpartition("-")[2] if rng != "-" else "",)
            if first_time(key):
                action = "cut%d" % cut_after
            else:
                cut_after = None
        log("%s %s range=%s action=%s" % (method, path, rng, action))

        if action == "reset":
            reset(c)
            return
        if action == "stallhead":
            hold(c)
            return
        if mode == "echo":
            if "100-continue" in hmap.get("expect", "").lower():
                c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            want = int(hmap.get("content-length", "0") or "0")
            body = rest
            while len(body) < want:
                chunk = c.recv(65536)
                if not chunk:
                    break
                body += chunk
            out = ("%s %s\n" % (method, path)).encode("latin-1") + body[:want]
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                      b"X-Echo-Test: %s\r\nContent-Length: %d\r\n\r\n%s"
                      % (hmap.get("x-test", "-").encode("latin-1"), len(out), out))
            c.close()
            return
        if action == "503":
            # Drain a small body unless the client waits for 100-continue.
            if "100-continue" not in hmap.get("expect", "").lower():
                try:
                    want = int(hmap.get("content-length", "0"))
                except ValueError:
                    want = 0
                got = len(rest)
                c.settimeout(2)
                try:
                    while got < want:
                        chunk = c.recv(65536)
                        if not chunk:
                            break
                        got += len(chunk)
                except OSError:
                    pass
            body = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
                    b"<Message>Please reduce your request rate.</Message></Error>")
            c.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\n"
                      b"Retry-After: 0\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
                      % (len(body), body))
            c.close()
            return

        out = ["%s %s %s" % (method, path, version)]
        for h in headers:
            name = h.decode("latin-1").partition(":")[0].strip().lower()
            if name in ("connection", "keep-alive", "proxy-connection"):
                continue
            if name == "range" and mode == "cutnr":
                continue
            out.append(h.decode("latin-1"))
        out.append("Connection: close")
        up = socket.create_connection(ARGS.upstream)
        fired = threading.Event()
        limit = None
        if action.startswith("rcut"):
            limit = max(0, int(action[4:]) - len(rest))
        up.sendall(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + rest)
        rate = int(action[6:]) if action.startswith("slowup") else None
        t = threading.Thread(target=pump, args=(c, up, limit, fired, rate), daemon=True)
        t.start()

        # Answers: forward 1xx interim answers, then the final head, then the body.
        buf = b""
        try:
            while True:
                rhead, buf = read_head(up, buf)
                if fired.is_set():
                    t.join(2)
                    reset(c)
                    up.close()
                    return
                if rhead is None:
                    c.sendall(buf)
                    break
                status = rhead.split(b" ", 2)[1] if b" " in rhead else b"000"
                if body_fault is not None and not status.startswith(b"1"):
                    answer_with_fault(c, up, t, rhead, buf, body_fault)
                    return
                c.sendall(rhead + b"\r\n\r\n")
                if status.startswith(b"1"):
                    continue
                sent = 0
                while True:
                    if buf:
                        data, buf = buf, b""
                    else:
                        data = up.recv(262144)
                    if not data:
                        break
                    if cut_after is not None and sent + len(data) >= cut_after:
                        # Exactly N body bytes, then the connection ends in the middle of
                        # the body (a FIN, so the client surely receives all N bytes; a
                        # reset could discard some of them and make the resume offset
                        # vary). SHUT_RD wakes the request pump blocked in recv on c.
                        c.sendall(data[: cut_after - sent])
                        drain(c)
                        try:
                            c.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
                        t.join(2)
                        c.close()
                        up.close()
                        return
                    c.sendall(data)
                    sent += len(data)
                break
        except OSError:
            pass
        try:
            up.close()
        except OSError:
            pass
        try:
            c.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        c.close()


BODY_MODES = ("stall", "stallall", "lenplus", "lenminus", "flip", "flip1")


def answer_with_fault(c, up, pump_thread, rhead, buf, fault):
    """Sends the final answer (head rhead, body = buf + the rest of up) with one body fault."""
    mode, n = fault
    lines = rhead.split(b"\r\n")
    length = None
    for i, h in enumerate(lines[1:], 1):
        name, _, value = h.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
            if mode == "lenplus":
                lines[i] = b"Content-Length: %d" % (length + n)
            elif mode == "lenminus":
                lines[i] = b"Content-Length: %d" % max(0, length - n)
    try:
        c.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
        limit = None
        if mode in ("stall", "stallall"):
            limit = n
        elif mode == "lenminus" and length is not None:
            limit = max(0, length - n)
        sent = 0
        while True:
            if buf:
                data, buf = buf, b""
            else:
                data = up.recv(262144)
            if not data:
                break
            if mode in ("flip", "flip1") and sent <= n < sent + len(data):
                b = bytearray(data)
                b[n - sent] ^= 0x01
                data = bytes(b)
            if limit is not None and sent + len(data) >= limit:
                c.sendall(data[: limit - sent])
                sent = limit
                break
            c.sendall(data)
            sent += len(data)
        up.close()
        if mode in ("stall", "stallall"):
            # Silent until the client gives up: the request pump returns when it closes.
            pump_thread.join(STALL_MAX)
        else:
            drain(c)
            c.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    c.close()


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--all", default=None, help="MODE[/N] for every request, path unchanged")
    p.add_argument("--match", default=None, help="with --all: only targets containing this")
    ARGS = p.parse_args()
    host, _, port = ARGS.upstream.rpartition(":")
    ARGS.upstream = (host, int(port))
    with Server(("127.0.0.1", ARGS.port), Handler) as srv:
        srv.serve_forever()


if __name__ == "__main__":
    main()
