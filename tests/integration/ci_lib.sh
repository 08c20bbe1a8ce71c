# Helpers for the CI-integration tests (GitHub action, GitLab template, shell wrapper).
# Source after lib.sh.

CI_TOOLS="$STOW_TEST_SRC/tests/ci-tools/node_modules/.bin"

# need_ci_tool NAME: the npm tools come from tests/ci-tools (npm ci in tests/run-all.sh);
# a missing one is a failure, not a skip.
need_ci_tool() {
    if [ ! -x "$CI_TOOLS/$1" ]; then
        echo "FAIL: $CI_TOOLS/$1 is missing: run (cd tests/ci-tools && npm ci) or tests/run-all.sh" >&2
        exit 1
    fi
}

need_cmd() {
    if ! command -v "$1" >/dev/null 2>&1; then
        echo "FAIL: $1 is not installed (tests/install-deps.sh installs it)" >&2
        exit 1
    fi
}

# jget FILE a.b.c: prints the value at that path of a JSON file ("null" when absent; strings
# raw, everything else as JSON).
jget() {
    python3 - "$1" "$2" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))
for part in sys.argv[2].split("."):
    if isinstance(v, dict) and part in v:
        v = v[part]
    elif isinstance(v, list) and part.isdigit() and int(part) < len(v):
        v = v[int(part)]
    else:
        v = None
        break
print(v if isinstance(v, str) else json.dumps(v))
PY
}
