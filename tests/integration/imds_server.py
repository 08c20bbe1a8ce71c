#!/usr/bin/env python3
"""A strict loopback EC2 instance metadata service (IMDSv2 only) for tests.

    PUT /latest/api/token                      needs X-aws-ec2-metadata-token-ttl-seconds
                                               (1..21600), answers a fresh token
    GET /latest/meta-data/iam/security-credentials/         role name
    GET /latest/meta-data/iam/security-credentials/<role>   credentials JSON

Every GET needs X-aws-ec2-metadata-token with a token this server issued and that has not
expired: 401 otherwise, like the real service with IMDSv1 disabled.

Binds 127.0.0.1 on --port (0 = any free port) and prints "PORT <n>" on stdout once it
listens. Exits when stdin reaches end of file, so a test that dies takes it along.
--log FILE appends one line per request ("METHOD PATH STATUS token=yes|no").
"""
import argparse
import datetime
import json
import secrets
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROLES_PATH = "/latest/meta-data/iam/security-credentials/"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--role", default="stowage-test-role")
    p.add_argument("--no-role", action="store_true", help="answer 404 to the role listing")
    p.add_argument("--refuse-tokens", action="store_true", help="answer 403 to PUT token")
    p.add_argument("--access-key", default="ASIAIMDSEXAMPLE00001")
    p.add_argument("--secret-key", default="imds/secret+EXAMPLE/KEY0000000000000000000")
    p.add_argument("--token", default="IQoJb3JpZ2luX2VjEXAMPLE//session+token==")
    p.add_argument("--expires-in", type=int, default=6 * 3600,
                   help="seconds from now to the credentials' Expiration")
    p.add_argument("--log", default=None)
    return p.parse_args()


ARGS = parse_args()
TOKENS = {}  # token -> expiry (monotonic seconds)
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    server_version = "EC2ws"
    sys_version = ""

    def log_message(self, fmt, *args):  # keep stderr quiet
        pass

    def _send(self, status, body=b"", ctype="text/plain"):
        if ARGS.log:  # logged before answering, so a client that got the answer sees the line
            has_token = "yes" if self.headers.get("X-aws-ec2-metadata-token") else "no"
            with LOCK, open(ARGS.log, "a", encoding="utf-8") as f:
                f.write(f"{self.command} {self.path} {status} token={has_token}\n")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_PUT(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.path != "/latest/api/token":
            return self._send(404, b"Not Found")
        if ARGS.refuse_tokens:
            return self._send(403, b"Forbidden")
        ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
        if ttl is None or not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
            return self._send(400, b"Bad Request")
        if self.headers.get("X-Forwarded-For"):
            return self._send(403, b"Forbidden")
        token = secrets.token_urlsafe(40)
        with LOCK:
            TOKENS[token] = time.monotonic() + int(ttl)
        return self._send(200, token.encode())

    def do_GET(self):
        token = self.headers.get("X-aws-ec2-metadata-token")
        with LOCK:
            valid = token is not None and TOKENS.get(token, 0) > time.monotonic()
        if not valid:
            return self._send(401, b"Unauthorized")
        if self.path == ROLES_PATH:
            if ARGS.no_role:
                return self._send(404, b"Not Found")
            return self._send(200, ARGS.role.encode())
        if self.path == ROLES_PATH + ARGS.role and not ARGS.no_role:
            now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
            exp = now + datetime.timedelta(seconds=ARGS.expires_in)
            body = {
                "Code": "Success",
                "LastUpdated": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "Type": "AWS-HMAC",
                "AccessKeyId": ARGS.access_key,
                "SecretAccessKey": ARGS.secret_key,
                "Token": ARGS.token,
                "Expiration": exp.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            return self._send(200, json.dumps(body, indent=2).encode(), "text/plain")
        return self._send(404, b"Not Found")


def main():
    server = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"PORT {server.server_address[1]}", flush=True)
    sys.stdin.read()  # until the parent closes the pipe or dies
    server.shutdown()


if __name__ == "__main__":
    main()
