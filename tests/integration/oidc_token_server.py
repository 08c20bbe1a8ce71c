#!/usr/bin/env python3
"""A loopback stand-in for the GitHub Actions ID token service (ACTIONS_ID_TOKEN_REQUEST_URL).

    GET /idtoken?api-version=2.0&audience=AUD   needs "Authorization: bearer <--request-token>"
                                                (401 otherwise); answers {"count": n,
                                                "value": "<a fresh JWT-shaped token>"}

Every answer is a new token. Binds 127.0.0.1 on --port (0 = any free port) and prints
"PORT <n>" on stdout once it listens; exits when stdin reaches end of file.
--log FILE: one line per request ("GET audience=AUD STATUS n=N"), never the token;
--tokens FILE: the tokens handed out, one a line (the test's record, to look for leaks).
"""
import argparse
import json
import secrets
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

P = argparse.ArgumentParser(description=__doc__.splitlines()[0])
P.add_argument("--port", type=int, default=0)
P.add_argument("--request-token", required=True)
P.add_argument("--log", required=True)
P.add_argument("--tokens", required=True)
ARGS = P.parse_args()
LOCK = threading.Lock()
COUNT = [0]


class Handler(BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(u.query)
        aud = ",".join(q.get("audience", []))
        status, body, n = 200, b"", 0
        if u.path != "/idtoken" or q.get("api-version") != ["2.0"]:
            status = 404
        elif self.headers.get("Authorization") != "bearer " + ARGS.request_token:
            status = 401
        else:
            with LOCK:
                COUNT[0] += 1
                n = COUNT[0]
                token = "eyJ0eXAiOiJKV1QifQ." + secrets.token_urlsafe(48) + ".sig" + str(n)
                with open(ARGS.tokens, "a", encoding="utf-8") as f:
                    f.write(token + "\n")
            body = json.dumps({"count": n, "value": token}).encode()
        with LOCK, open(ARGS.log, "a", encoding="utf-8") as f:
            f.write(f"GET audience={aud} {status} n={n}\n")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main():
    server = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"PORT {server.server_address[1]}", flush=True)
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    main()
