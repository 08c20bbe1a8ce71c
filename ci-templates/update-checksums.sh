#!/bin/sh
# update-checksums.sh RELEASE_URL DIST_DIR: adds the tarballs of a release to the checksum
# lists committed in the CI templates (docs/RELEASE.md, "Checksums in the CI templates"):
#   ci-templates/checksums.txt            read by the GitHub action and stowage-ci.sh
#   ci-templates/gitlab/stowage.gitlab-ci.yml  the same lines between its BEGIN/END markers
# DIST_DIR holds stowage-<version>-linux-<arch>.tar.gz and its .sha256 (tools/dist.sh); each
# .sha256 is checked against its tarball first. RELEASE_URL is the base the files are
# downloaded from (<base>/v<version>/<file>), e.g.
# https://github.com/OWNER/stowage/releases/download. Existing lines for the same file are
# replaced; the rest are kept, sorted by file name.
set -eu
[ $# -eq 2 ] || { echo "usage: $0 RELEASE_URL DIST_DIR" >&2; exit 2; }
url=$1
dist=$2
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
list=$here/checksums.txt
gitlab=$here/gitlab/stowage.gitlab-ci.yml
case "$url" in
http://* | https://*) ;;
*) echo "update-checksums: RELEASE_URL must be an http(s) URL" >&2; exit 2 ;;
esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=0
for s in "$dist"/stowage-*-linux-*.tar.gz.sha256; do
    [ -f "$s" ] || continue
    (cd "$dist" && sha256sum -c --quiet "$(basename "$s")") >&2
    read -r sum file <"$s"
    case "$sum" in *[!0-9a-f]* | "") echo "update-checksums: bad line in $s" >&2; exit 1 ;; esac
    [ ${#sum} -eq 64 ] || { echo "update-checksums: bad sha256 in $s" >&2; exit 1; }
    printf '%s  %s\n' "$sum" "${file#\*}" >>"$tmp/new"
    n=$((n + 1))
done
[ "$n" -gt 0 ] || { echo "update-checksums: no stowage-*-linux-*.tar.gz.sha256 in $dist" >&2; exit 1; }
# The entries: the old ones whose file is not in the new set, then the new ones.
grep -E '^[0-9a-f]{64}  ' "$list" | while read -r sum file; do
    grep -qF "  $file" "$tmp/new" || printf '%s  %s\n' "$sum" "$file"
done >"$tmp/entries"
cat "$tmp/new" >>"$tmp/entries"
LC_ALL=C sort -k2 "$tmp/entries" >"$tmp/sorted"
{
    grep -E '^#' "$list"
    printf 'release-url %s\n' "$url"
    cat "$tmp/sorted"
} >"$tmp/list"
# The GitLab template: replace the lines between the markers, keeping their indentation.
awk -v entries="$tmp/list" '
/# BEGIN stowage release checksums/ {
    print; ind = $0; sub(/#.*/, "", ind)
    while ((getline line < entries) > 0) if (line !~ /^#/) print ind line
    skip = 1; next
}
/# END stowage release checksums/ { skip = 0 }
!skip { print }
' "$gitlab" >"$tmp/gitlab"
grep -q '# END stowage release checksums' "$tmp/gitlab" || { echo "update-checksums: no markers in $gitlab" >&2; exit 1; }
cat "$tmp/list" >"$list"
cat "$tmp/gitlab" >"$gitlab"
echo "update-checksums: $n artifact(s) listed in $list and $gitlab"
