# shellcheck shell=bash
# S3 test servers for integration tests. Source it from a test script:
#
#   . "$STOW_TEST_SRC/tests/integration/lib_s3.sh"
#   s3_start_s3rver my-bucket || exit 1        # s3rver must work: fail loudly
#   rc=0; s3_start_moto my-bucket || rc=$?     # moto may be absent on a machine:
#   [ "$rc" = 77 ] && exit 77; [ "$rc" = 0 ] || exit 1
#
# After a start these are exported:
#   S3_SERVER              s3rver | moto
#   S3_ENDPOINT            http://127.0.0.1:<port>
#   S3_BUCKET, S3_REGION   the bucket (already created) and us-east-1
#   S3_URL                 s3://<bucket>
#   S3_LOG                 the server's log file (printed on a failed start)
#   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_DEFAULT_REGION
# and AWS_SESSION_TOKEN / AWS_PROFILE are unset, AWS_SHARED_CREDENTIALS_FILE points to a
# missing file and AWS_EC2_METADATA_DISABLED=true, so nothing from the host leaks in.
#
# Both servers listen on 127.0.0.1 on a free port, keep their data in a temp dir and are
# stopped (process group killed, temp dirs removed) by s3_cleanup, which is installed as
# the EXIT trap; a script with its own EXIT trap must call s3_cleanup from it.
# Only one server at a time: starting a second one stops the first.
#
# Return codes of s3_start_*: 0 started, 77 prerequisite missing (moto only: moto_server
# not installed), 1 failed to start (message and log tail on stderr).
#
# Helpers once a server runs (requests are SigV4-signed by curl --aws-sigv4):
#   s3_request METHOD /bucket/key [curl args...]   prints the body; fails on HTTP >= 400
#   s3_status  METHOD /bucket/key [curl args...]   prints the HTTP status only
#   s3_put_file KEY FILE / s3_get_file KEY FILE    objects in S3_BUCKET
#   s3_list_keys [PREFIX]                          keys in S3_BUCKET, one per line
#   s3_mktemp VAR                                  temp dir removed by s3_cleanup
#
# TLS: with S3_TLS_CERT and S3_TLS_KEY set (PEM files), s3_start_s3rver serves https and
# the helpers above trust S3_TLS_CERT.
#
# Server quirks (s3rver 3.7.1 from npm, moto 5.x):
#   s3rver  accepts anonymous requests and does NOT verify SigV4 signatures at all (only
#           that the access key exists, S3RVER/S3RVER, and that x-amz-content-sha256 is
#           present): it tests the protocol, not the signing. Buckets come from
#           --configure-bucket at start-up (no PUT needed).
#   moto    with INITIAL_NO_AUTH_ACTION_COUNT=5 the first five service requests are not
#           authenticated (used for CreateUser, PutUserPolicy, CreateAccessKey, CreateRole,
#           PutRolePolicy), every later one is. The user may use S3 and assume the role
#           stowage-role (s3:*): s3_moto_assume_role gets session credentials for it. For role
#           chains, the role may assume itself from a session named "chain" (moto checks
#           the trust policy's principal and the role's own sts:AssumeRole permission).
#           Session credentials must come from AssumeRole: moto only accepts ASIA keys it
#           recorded for an assumed role (GetSessionToken's are refused as InvalidAccessKeyId)
#           and refuses an IAM user key sent with x-amz-security-token (InvalidToken). A bad signature is 403 <Code>SignatureDoesNotMatch</Code>, an unknown key
#           403 <Code>InvalidAccessKeyId</Code>, an unsigned request 500 (moto raises
#           KeyError on the missing Authorization header). With auth on it rejects CORRECT
#           signatures over %2F, %3D (and %2B) in the path or query with
#           SignatureDoesNotMatch: avoid those characters in object names and query values
#           used against moto. It does not check x-amz-content-sha256 against the body.

S3_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
S3_REGION=us-east-1
S3_TMPDIRS=()
S3_PID=

s3_log() { echo "lib_s3: $*" >&2; }

s3_cleanup() {
    s3_stop
    local d
    for d in "${S3_TMPDIRS[@]}"; do
        [ -n "$d" ] && [ -d "$d" ] && rm -rf -- "$d"
    done
    S3_TMPDIRS=()
}
trap s3_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Stops the running server (its whole process group) and waits for it.
s3_stop() {
    [ -n "$S3_PID" ] || return 0
    kill -TERM -- "-$S3_PID" 2>/dev/null || kill -TERM "$S3_PID" 2>/dev/null
    for _ in $(seq 1 50); do
        kill -0 "$S3_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "-$S3_PID" 2>/dev/null
    wait "$S3_PID" 2>/dev/null
    S3_PID=
}

# s3_mktemp VAR: makes a temp dir removed by s3_cleanup and stores its path in VAR.
# (Not "$(s3_mktemp)": a subshell could not register the dir for cleanup.)
s3_mktemp() {
    local d
    d=$(mktemp -d "${TMPDIR:-/tmp}/stow-s3.XXXXXX") || return 1
    S3_TMPDIRS+=("$d")
    printf -v "$1" '%s' "$d"
}

s3_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts "$@" in its own process group with output to $S3_LOG; sets S3_PID.
s3_spawn() {
    if command -v setsid >/dev/null; then
        setsid "$@" >"$S3_LOG" 2>&1 &
    else
        "$@" >"$S3_LOG" 2>&1 &
    fi
    S3_PID=$!
}

# Waits until URL answers with status $2 (default: any HTTP answer), up to $3 seconds.
s3_wait_http() {
    local url=$1 want=${2:-} secs=${3:-30} code
    for _ in $(seq 1 $((secs * 5))); do
        if [ -n "$S3_PID" ] && ! kill -0 "$S3_PID" 2>/dev/null; then
            return 1
        fi
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 ${S3_TLS_CERT:+--cacert "$S3_TLS_CERT"} "$url" 2>/dev/null)
        if [ "$code" != "000" ] && { [ -z "$want" ] || [ "$code" = "$want" ]; }; then
            return 0
        fi
        sleep 0.2
    done
    return 1
}

s3_start_failed() {
    s3_log "$1"
    if [ -n "${S3_LOG:-}" ] && [ -f "$S3_LOG" ]; then
        s3_log "last lines of $S3_LOG:"
        tail -n 20 "$S3_LOG" >&2
    fi
    s3_stop
    return 1
}

s3_export() { # server endpoint bucket key secret
    export S3_SERVER=$1 S3_ENDPOINT=$2 S3_BUCKET=$3 S3_REGION S3_LOG
    export S3_URL="s3://$3"
    export AWS_ACCESS_KEY_ID=$4 AWS_SECRET_ACCESS_KEY=$5
    export AWS_REGION=$S3_REGION AWS_DEFAULT_REGION=$S3_REGION
    export AWS_EC2_METADATA_DISABLED=true
    export AWS_SHARED_CREDENTIALS_FILE="${S3_TMPDIRS[0]:-/nonexistent}/no-aws-credentials"
    unset AWS_SESSION_TOKEN AWS_SECURITY_TOKEN AWS_PROFILE
}

# ---- signed requests with curl ----

s3_curl() { # method path curl-args...
    local method=(-X "$1") path=$2
    [ "$1" = HEAD ] && method=(--head) # -X HEAD would wait for a body
    shift 2
    curl -sS "${method[@]}" ${S3_TLS_CERT:+--cacert "$S3_TLS_CERT"} \
        -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
        --aws-sigv4 "aws:amz:$S3_REGION:s3" \
        --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
        "$@" "$S3_ENDPOINT$path"
}

s3_request() { s3_curl "$1" "$2" --fail-with-body "${@:3}"; }

s3_status() { s3_curl "$1" "$2" -o /dev/null -w '%{http_code}' "${@:3}"; }

s3_put_file() { s3_curl PUT "/$S3_BUCKET/$1" --fail-with-body -o /dev/null -T "$2"; }

s3_get_file() { s3_curl GET "/$S3_BUCKET/$1" --fail-with-body -o "$2"; }

# Query-value encoding that both servers accept: '/' stays literal because moto refuses
# correct signatures over %2F (AWS and s3rver accept either form).
s3_urlencode() {
    python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe="/-_.~"))' "$1"
}

s3_list_keys() { # [prefix]: ListObjectsV2, all pages
    local prefix=${1:-} token="" out parsed q line
    while :; do
        q="list-type=2&prefix=$(s3_urlencode "$prefix")"
        [ -n "$token" ] && q="$q&continuation-token=$(s3_urlencode "$token")"
        out=$(s3_request GET "/$S3_BUCKET?$q") || return 1
        parsed=$(printf '%s' "$out" | python3 -c '
import sys, xml.etree.ElementTree as ET
root = ET.fromstring(sys.stdin.buffer.read())
ns = root.tag[:root.tag.index("}") + 1] if root.tag.startswith("{") else ""
for c in root.iter(ns + "Contents"):
    print("K" + c.find(ns + "Key").text)
t = root.find(ns + "NextContinuationToken")
trunc = root.find(ns + "IsTruncated")
if trunc is not None and trunc.text == "true" and t is not None:
    print("T" + t.text)
') || return 1
        token=
        while IFS= read -r line; do
            case $line in
            K*) printf '%s\n' "${line#K}" ;;
            T*) token=${line#T} ;;
            esac
        done <<<"$parsed"
        [ -n "$token" ] || break
    done
}

# ---- s3rver (npm, pinned in tests/integration/s3rver/package-lock.json) ----

s3_start_s3rver() { # [bucket]
    local bucket=${1:-stowage-test} dir port attempt scheme=http tls=()
    local bin="$S3_LIB_DIR/s3rver/node_modules/.bin/s3rver"
    s3_stop
    if ! command -v node >/dev/null; then
        s3_log "node is not installed; s3rver needs Node.js"
        return 1
    fi
    if [ ! -x "$bin" ]; then
        s3_log "s3rver is not installed: run 'npm ci' in $S3_LIB_DIR/s3rver"
        return 1
    fi
    s3_mktemp dir || return 1
    for attempt in 1 2 3; do
        port=$(s3_free_port) || return 1
        S3_LOG="$dir/s3rver.log"
        if [ -n "${S3_TLS_CERT:-}" ] && [ -n "${S3_TLS_KEY:-}" ]; then
            scheme=https
            tls=(--cert "$S3_TLS_CERT" --key "$S3_TLS_KEY")
        fi
        NODE_OPTIONS=--openssl-legacy-provider s3_spawn "$bin" --directory "$dir/data" \
            --address 127.0.0.1 --port "$port" --configure-bucket "$bucket" "${tls[@]}"
        if s3_wait_http "$scheme://127.0.0.1:$port/" 200 30; then
            break
        fi
        s3_stop
        [ "$attempt" = 3 ] && { s3_start_failed "s3rver did not start on 127.0.0.1:$port"; return 1; }
    done
    s3_export s3rver "$scheme://127.0.0.1:$port" "$bucket" S3RVER S3RVER
    if [ "$(s3_status HEAD "/$bucket")" != 200 ]; then
        s3_start_failed "s3rver: bucket $bucket was not created"
        return 1
    fi
    s3_log "s3rver on $S3_ENDPOINT, bucket $bucket, data in $dir"
}

# ---- moto_server with authentication on ----

# s3_moto_assume_role [SECONDS]: prints "ACCESS_KEY SECRET SESSION_TOKEN EXPIRATION" of
# session credentials for stowage-role, obtained with AssumeRole signed by the IAM user.
s3_moto_assume_role() {
    local body
    body=$(curl -sS --fail-with-body -X POST "$S3_ENDPOINT/" \
        --aws-sigv4 "aws:amz:$S3_REGION:sts" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
        --data-urlencode "Action=AssumeRole" --data-urlencode "Version=2011-06-15" \
        --data-urlencode "RoleArn=arn:aws:iam::123456789012:role/stowage-role" \
        --data-urlencode "RoleSessionName=stowage-test" \
        --data-urlencode "DurationSeconds=${1:-3600}") || { s3_log "AssumeRole failed: $body"; return 1; }
    printf '%s' "$body" | python3 -c '
import sys, xml.etree.ElementTree as ET
root = ET.fromstring(sys.stdin.buffer.read())
ns = root.tag[:root.tag.index("}") + 1] if root.tag.startswith("{") else ""
c = root.find(".//" + ns + "Credentials")
print(*(c.find(ns + f).text for f in ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")))
'
}

s3_find_moto() {
    if [ -n "${MOTO_SERVER:-}" ] && [ -x "$MOTO_SERVER" ]; then
        echo "$MOTO_SERVER"
    elif command -v moto_server >/dev/null; then
        command -v moto_server
    elif [ -x "$HOME/.pyenv/shims/moto_server" ]; then
        echo "$HOME/.pyenv/shims/moto_server"
    else
        return 1
    fi
}

# An IAM query API call during moto's unauthenticated start-up window. moto routes by the
# service in the Authorization header's credential scope; the signature is not checked yet.
s3_moto_iam() {
    curl -sS --fail-with-body -X POST "$S3_ENDPOINT_PENDING/" \
        -H "Authorization: AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20240101/$S3_REGION/iam/aws4_request, SignedHeaders=host, Signature=0" \
        --data-urlencode "Version=2010-05-08" "$@"
}

s3_start_moto() { # [bucket]
    local bucket=${1:-stowage-test} moto dir port attempt keys ak sk code body
    s3_stop
    if ! moto=$(s3_find_moto); then
        s3_log "moto_server is not installed (set MOTO_SERVER or put it on PATH)"
        return 77
    fi
    s3_mktemp dir || return 1
    for attempt in 1 2 3; do
        port=$(s3_free_port) || return 1
        S3_LOG="$dir/moto.log"
        # exactly the five IAM set-up calls below run unauthenticated (plus the
        # S3_MOTO_SETUP_CALLS calls of an S3_MOTO_SETUP function, see below)
        INITIAL_NO_AUTH_ACTION_COUNT=$((5 + ${S3_MOTO_SETUP_CALLS:-0})) s3_spawn "$moto" -H 127.0.0.1 -p "$port"
        if s3_wait_http "http://127.0.0.1:$port/moto-api/" 200 60; then
            break
        fi
        s3_stop
        [ "$attempt" = 3 ] && { s3_start_failed "moto_server did not start on 127.0.0.1:$port"; return 1; }
    done
    S3_ENDPOINT_PENDING="http://127.0.0.1:$port"

    s3_moto_iam --data-urlencode "Action=CreateUser" --data-urlencode "UserName=stowage" \
        >/dev/null || { s3_start_failed "moto: CreateUser failed"; return 1; }
    s3_moto_iam --data-urlencode "Action=PutUserPolicy" --data-urlencode "UserName=stowage" \
        --data-urlencode "PolicyName=s3-all" \
        --data-urlencode 'PolicyDocument={"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*","sts:AssumeRole"],"Resource":"*"}]}' \
        >/dev/null || { s3_start_failed "moto: PutUserPolicy failed"; return 1; }
    s3_moto_iam --data-urlencode "Action=CreateRole" --data-urlencode "RoleName=stowage-role" \
        --data-urlencode 'AssumeRolePolicyDocument={"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::123456789012:user/stowage","arn:aws:sts::123456789012:assumed-role/stowage-role/chain"]},"Action":"sts:AssumeRole"}]}' \
        >/dev/null || { s3_start_failed "moto: CreateRole failed"; return 1; }
    s3_moto_iam --data-urlencode "Action=PutRolePolicy" --data-urlencode "RoleName=stowage-role" \
        --data-urlencode "PolicyName=s3-all" \
        --data-urlencode 'PolicyDocument={"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*","sts:AssumeRole"],"Resource":"*"}]}' \
        >/dev/null || { s3_start_failed "moto: PutRolePolicy failed"; return 1; }
    body=$(s3_moto_iam --data-urlencode "Action=CreateAccessKey" --data-urlencode "UserName=stowage") ||
        { s3_start_failed "moto: CreateAccessKey failed"; return 1; }
    keys=$(printf '%s' "$body" | python3 -c '
import sys, xml.etree.ElementTree as ET
root = ET.fromstring(sys.stdin.buffer.read())
ns = root.tag[:root.tag.index("}") + 1] if root.tag.startswith("{") else ""
print(root.find(".//" + ns + "AccessKeyId").text, root.find(".//" + ns + "SecretAccessKey").text)
') || { s3_start_failed "moto: cannot read the CreateAccessKey answer"; return 1; }
    read -r ak sk <<<"$keys"
    # S3_MOTO_SETUP: a function making exactly S3_MOTO_SETUP_CALLS more IAM calls
    # (s3_moto_iam) while authentication is still off, e.g. users with narrower policies.
    if [ -n "${S3_MOTO_SETUP:-}" ]; then
        "$S3_MOTO_SETUP" || { s3_start_failed "moto: $S3_MOTO_SETUP failed"; return 1; }
    fi
    s3_export moto "$S3_ENDPOINT_PENDING" "$bucket" "$ak" "$sk"

    # authentication must now be on: a wrong secret is refused, the real one accepted
    body=$(AWS_SECRET_ACCESS_KEY=wrong-secret s3_curl PUT "/$bucket" -w '\n%{http_code}')
    code=${body##*$'\n'}
    if [ "$code" != 403 ] || [[ "$body" != *SignatureDoesNotMatch* ]]; then
        s3_start_failed "moto: authentication is not on (bad signature got HTTP $code)"
        return 1
    fi
    code=$(s3_status PUT "/$bucket")
    if [ "$code" != 200 ]; then
        s3_start_failed "moto: CreateBucket $bucket got HTTP $code"
        return 1
    fi
    s3_log "moto on $S3_ENDPOINT (auth on, key $ak), bucket $bucket"
}
