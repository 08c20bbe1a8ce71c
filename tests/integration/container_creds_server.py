#!/usr/bin/env python3
"""A strict loopback AWS container-credentials service (ECS agent / EKS Pod Identity agent).

    GET /rel/<anything>   the relative-URI form (ECS): must NOT carry an Authorization header
    GET /full/<anything>  the full-URI form (EKS Pod Identity): needs Authorization equal to
                          --auth-token (401 otherwise)

answers {"AccessKeyId", "SecretAccessKey", "Token", "Expiration"} like the agents do.

Binds 127.0.0.1 on --port (0 = any free port) and prints "PORT <n>" on stdout once it
listens. Exits when stdin reaches end of file, so a test that dies takes it along.
--log FILE appends one line per request ("GET PATH STATUS auth=yes|no|bad"); the token
itself is never written.
"""
import argparse
import datetime
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--auth-token", default="container-auth-token-EXAMPLE")
    p.add_argument("--access-key", default="ASIACONTAINEREXAMPLE")
    p.add_argument("--secret-key", default="container/secret+EXAMPLE/KEY000000000000")
    p.add_argument("--token", default="IQoJb3JpZ2luX2VjEXAMPLE//container+token==")
    p.add_argument("--expires-in", type=int, default=6 * 3600,
                   help="seconds from now to the credentials' Expiration")
    p.add_argument("--log", default=None)
    return p.parse_args()


ARGS = parse_args()
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    server_version = "ContainerCreds"
    sys_version = ""

    def log_message(self, fmt, *args):  # keep stderr quiet
        pass

    def _send(self, status, auth, body=b"", ctype="application/json"):
        if ARGS.log:  # logged before answering, so a client that got the answer sees the line
            with LOCK, open(ARGS.log, "a", encoding="utf-8") as f:
                f.write(f"{self.command} {self.path} {status} auth={auth}\n")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        got = self.headers.get("Authorization")
        auth = "no" if got is None else ("yes" if got == ARGS.auth_token else "bad")
        if self.path.startswith("/rel/"):
            if got is not None:  # a relative URI never carries the token
                return self._send(400, auth, b'{"message":"unexpected Authorization"}')
        elif self.path.startswith("/full/"):
            if auth != "yes":
                return self._send(401, auth, b'{"message":"Unauthorized"}')
        else:
            return self._send(404, auth, b'{"message":"Not Found"}')
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        exp = now + datetime.timedelta(seconds=ARGS.expires_in)
        body = {
            "RoleArn": "arn:aws:iam::123456789012:role/stowage-test",
            "AccessKeyId": ARGS.access_key,
            "SecretAccessKey": ARGS.secret_key,
            "Token": ARGS.token,
            "Expiration": exp.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        return self._send(200, auth, json.dumps(body).encode())


def main():
    server = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"PORT {server.server_address[1]}", flush=True)
    sys.stdin.read()  # until the parent closes the pipe or dies
    server.shutdown()


if __name__ == "__main__":
    main()
