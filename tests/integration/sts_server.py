#!/usr/bin/env python3
"""A strict loopback AWS STS stand-in for AssumeRoleWithWebIdentity, for tests.

moto's STS does not check a web identity token, so this server checks the request shape
against the AWS STS API reference (AssumeRoleWithWebIdentity, API version 2011-06-15):

    POST / with Content-Type application/x-www-form-urlencoded
    no Authorization and no X-Amz-Security-Token header (the call is unsigned)
    Action=AssumeRoleWithWebIdentity, Version=2011-06-15
    RoleArn        an IAM role ARN (arn:aws:iam::<12 digits>:role/<name>), 20..2048 chars
    RoleSessionName  [\\w+=,.@-]{2,64}
    WebIdentityToken 4..20000 chars, equal to the content of --token-file
    DurationSeconds  optional, 900..43200
    no other parameters except ProviderId, Policy, PolicyArns.member.N

A request that breaks a rule gets the error answer AWS would send (HTTP 400,
<ErrorResponse><Error><Type>Sender</Type><Code>...</Code><Message>...</Message>); a wrong
token gets InvalidIdentityToken; with --fail-first N the first N requests get the transient
IDPCommunicationError; --role-arn, when set, must match (else AccessDenied). A
good one gets an AssumeRoleWithWebIdentityResponse with the credentials given by
--access-key/--secret-key/--session-token, expiring --expires-in seconds from now.

Binds 127.0.0.1 on --port (0 = any free port) and prints "PORT <n>" on stdout once it
listens. Exits when stdin reaches end of file. --log FILE appends one line per request:
"POST <path> <status> <Code or OK> role=<RoleArn> session=<name> token=ok|bad|none
auth=yes|no" (the token itself is never written).
"""
import argparse
import datetime
import re
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape

NS = "https://sts.amazonaws.com/doc/2011-06-15/"
ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
SESSION_RE = re.compile(r"^[\w+=,.@-]{2,64}$")
ALLOWED = {"Action", "Version", "RoleArn", "RoleSessionName", "WebIdentityToken",
           "DurationSeconds", "ProviderId", "Policy"}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--token-file", required=True, help="the token the client must send")
    p.add_argument("--role-arn", default=None)
    p.add_argument("--access-key", required=True)
    p.add_argument("--secret-key", required=True)
    p.add_argument("--session-token", required=True)
    p.add_argument("--expires-in", type=int, default=3600)
    p.add_argument("--log", default=None)
    p.add_argument("--fail-first", type=int, default=0,
                   help="answer the first N requests 400 IDPCommunicationError (transient)")
    return p.parse_args()


ARGS = parse_args()
LOCK = threading.Lock()
FAILED = [0]


class Handler(BaseHTTPRequestHandler):
    server_version = "sts-standin"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _answer(self, status, body, code, form, token_state):
        if ARGS.log:
            auth = "yes" if (self.headers.get("Authorization") or
                             self.headers.get("X-Amz-Security-Token")) else "no"
            role = form.get("RoleArn", "-")
            session = form.get("RoleSessionName", "-")
            with LOCK, open(ARGS.log, "a", encoding="utf-8") as f:
                f.write(f"{self.command} {self.path} {status} {code} role={role} "
                        f"session={session} token={token_state} auth={auth}\n")
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status, code, message, form, token_state="none"):
        body = (f'<ErrorResponse xmlns="{NS}"><Error><Type>Sender</Type><Code>{code}</Code>'
                f"<Message>{escape(message)}</Message></Error>"
                "<RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>")
        self._answer(status, body, code, form, token_state)

    def do_GET(self):
        self._error(405, "InvalidAction", "STS takes POST", {})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        try:
            pairs = urllib.parse.parse_qsl(raw, keep_blank_values=True, strict_parsing=True)
        except ValueError:
            return self._error(400, "MalformedQueryString", "body is not form-encoded", {})
        form = {}
        for k, v in pairs:
            if k in form:
                return self._error(400, "InvalidParameterCombination", f"{k} repeated", form)
            form[k] = v
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if self.path not in ("/", ""):
            return self._error(404, "NotFound", f"path {self.path}", form)
        if ctype != "application/x-www-form-urlencoded":
            return self._error(400, "InvalidParameterValue", f"Content-Type {ctype}", form)
        if self.headers.get("Authorization") or self.headers.get("X-Amz-Security-Token"):
            return self._error(400, "InvalidParameterValue",
                               "AssumeRoleWithWebIdentity must not be signed", form)
        for k in form:
            if k not in ALLOWED and not k.startswith("PolicyArns.member."):
                return self._error(400, "InvalidParameterValue", f"unknown parameter {k}", form)
        if form.get("Action") != "AssumeRoleWithWebIdentity":
            return self._error(400, "InvalidAction", f"Action {form.get('Action')}", form)
        if form.get("Version") != "2011-06-15":
            return self._error(400, "InvalidParameterValue", "Version must be 2011-06-15", form)
        for k in ("RoleArn", "RoleSessionName", "WebIdentityToken"):
            if k not in form:
                return self._error(400, "MissingParameter", f"{k} is required", form)
        arn = form["RoleArn"]
        if not (20 <= len(arn) <= 2048 and ARN_RE.match(arn)):
            return self._error(400, "ValidationError", "RoleArn is not a role ARN", form)
        if not SESSION_RE.match(form["RoleSessionName"]):
            return self._error(400, "ValidationError", "RoleSessionName is invalid", form)
        if "DurationSeconds" in form:
            d = form["DurationSeconds"]
            if not d.isdigit() or not 900 <= int(d) <= 43200:
                return self._error(400, "ValidationError", "DurationSeconds out of range", form)
        with LOCK:
            transient = FAILED[0] < ARGS.fail_first
            FAILED[0] += 1 if transient else 0
        if transient:
            return self._error(400, "IDPCommunicationError",
                               "The request could not be fulfilled because the identity provider "
                               "(IDP) that was asked to verify the incoming identity token could "
                               "not be reached", form)
        token = form["WebIdentityToken"]
        with open(ARGS.token_file, encoding="utf-8") as f:
            want = f.read().strip()
        if not 4 <= len(token) <= 20000 or token != want:
            return self._error(400, "InvalidIdentityToken",
                               "Couldn't retrieve verification key from your identity provider",
                               form, "bad")
        if ARGS.role_arn and arn != ARGS.role_arn:
            return self._error(403, "AccessDenied", "Not authorized to perform "
                               "sts:AssumeRoleWithWebIdentity", form, "ok")
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        exp = (now + datetime.timedelta(seconds=ARGS.expires_in)).strftime("%Y-%m-%dT%H:%M:%SZ")
        session = form["RoleSessionName"]
        body = (f'<AssumeRoleWithWebIdentityResponse xmlns="{NS}">'
                "<AssumeRoleWithWebIdentityResult>"
                "<SubjectFromWebIdentityToken>repo:o/r:ref:refs/heads/main"
                "</SubjectFromWebIdentityToken>"
                f"<AssumedRoleUser><Arn>{escape(arn)}/{escape(session)}</Arn>"
                "<AssumedRoleId>AROAEXAMPLE:x</AssumedRoleId></AssumedRoleUser>"
                f"<Credentials><SessionToken>{escape(ARGS.session_token)}</SessionToken>"
                f"<SecretAccessKey>{escape(ARGS.secret_key)}</SecretAccessKey>"
                f"<Expiration>{exp}</Expiration>"
                f"<AccessKeyId>{escape(ARGS.access_key)}</AccessKeyId></Credentials>"
                "<Audience>sts.amazonaws.com</Audience>"
                "<Provider>token.actions.githubusercontent.com</Provider>"
                "</AssumeRoleWithWebIdentityResult>"
                "<ResponseMetadata><RequestId>00000000-0000-0000-0000-000000000001</RequestId>"
                "</ResponseMetadata></AssumeRoleWithWebIdentityResponse>")
        self._answer(200, body, "OK", form, "ok")


def main():
    server = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"PORT {server.server_address[1]}", flush=True)
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    main()
