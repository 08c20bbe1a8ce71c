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
while IFS= read -r f; do
    first=$(head -c 64 "$f" | head -n 1 | tr -d '\0')
    opts=()
    case "$first" in
    '#!'*/sh | '#!'*/bash | '#!'*/dash | '#!/usr/bin/env bash' | '#!/usr/bin/env sh') ;;
    *)
        case "$f" in
        *.sh) opts=(--shell=bash) ;; # sourced, no shebang
        *) continue ;;
        esac
        ;;
    esac
    n=$((n + 1))
    if shellcheck "${opts[@]}" "$f" >"$T/sc.out" 2>&1; then ok "$f"; else fail "$f: $(head -30 "$T/sc.out")"; fi
done <"$T/files"
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
