#!/usr/bin/env bash
# Every shell script in the repository passes shellcheck (settings in .shellcheckrc): *.sh
# files, files with a sh/bash/dash shebang, sourced libraries (checked as bash), and the
# scripts embedded in the GitLab template and example pipeline (checked as POSIX sh).
# shellcheck disable=SC2016 # node -e programs are single-quoted on purpose
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/ci_lib.sh"
need_cmd shellcheck
need_ci_tool gitlab-ci-local # provides js-yaml

cd "$STOW_TEST_SRC"
find . \( -name .git -o -name node_modules -o -name 'build' -o -name 'build-*' -o -name .gitlab-ci-local \) -prune -o \
    -type f -print | LC_ALL=C sort >"$T/files"
n=0
case_begin "shell scripts"
scripts=() # with a shebang: shellcheck reads the shell from it
sourced=() # *.sh without one: sourced libraries, checked as bash
while IFS= read -r f; do
    first=$(head -c 64 "$f" | head -n 1 | tr -d '\0')
    case "$first" in
    '#!'*/sh | '#!'*/bash | '#!'*/dash | '#!/usr/bin/env bash' | '#!/usr/bin/env sh') scripts+=("$f") ;;
    *)
        case "$f" in
        *.sh) sourced+=("$f") ;;
        *) continue ;;
        esac
        ;;
    esac
    n=$((n + 1))
done <"$T/files"
# One shellcheck per group (its start-up dominates); a failing group is checked file by file
# so that the failure names each bad script.
check_group() {
    if shellcheck "$@" >"$T/sc.out" 2>&1; then
        return 0
    fi
    local opts=() f
    [ "$1" = --shell=bash ] && opts=(--shell=bash) && shift
    for f in "$@"; do
        if shellcheck "${opts[@]}" "$f" >"$T/sc.out" 2>&1; then ok "$f"; else fail "$f: $(head -30 "$T/sc.out")"; fi
    done
}
check_group "${scripts[@]}" && ok "${#scripts[@]} scripts with a shebang"
check_group --shell=bash "${sourced[@]}" && ok "${#sourced[@]} sourced libraries"
[ "$n" -ge 15 ] && ok "$n scripts checked" || fail "only $n scripts found"

case_begin "scripts embedded in GitLab YAML"
for y in ci-templates/gitlab/stowage.gitlab-ci.yml examples/gitlab-ci.yml; do
    rm -rf "$T/yml" && mkdir -p "$T/yml"
    node -e '
const yaml = require(process.argv[1]);
const fs = require("fs");
const doc = yaml.load(fs.readFileSync(process.argv[2], "utf8"));
let i = 0;
for (const [job, def] of Object.entries(doc)) {
  if (!def || typeof def !== "object" || Array.isArray(def)) continue;
  for (const part of ["before_script", "script", "after_script"]) {
    if (!Array.isArray(def[part])) continue;
    const body = def[part].filter((l) => typeof l === "string").join("\n");
    fs.writeFileSync(`${process.argv[3]}/${String(i++).padStart(2, "0")}-${job.replace(/\W/g, "_")}-${part}.sh`, body + "\n");
  }
}
' "$STOW_TEST_SRC/tests/ci-tools/node_modules/js-yaml" "$y" "$T/yml"
    count=$(find "$T/yml" -name '*.sh' | wc -l)
    [ "$count" -gt 0 ] || fail "$y: no scripts found"
    for s in "$T"/yml/*.sh; do
        # CI_* and STOWAGE_* come from GitLab; SC2154 would flag every one of them.
        if shellcheck --shell=sh -e SC2154 "$s" >"$T/sc.out" 2>&1; then ok "$y: $(basename "$s")"; else fail "$y $(basename "$s"): $(head -30 "$T/sc.out")"; fi
    done
done

finish
