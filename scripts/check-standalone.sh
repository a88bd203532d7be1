#!/usr/bin/env bash
# Refuses a tree that depends on anything outside the repository: code, scripts and docs must
# not point at a folder beside the checkout (the shared folder of the product contract, `SPEC.md` and its sections) or at
# a path of one machine (a home, root, Users or work folder at the top of the file system), and every relative link
# in a Markdown file must name a file or folder that exists in the repository.
# Usage: scripts/check-standalone.sh [REPO_DIR]   (default: this repository)
# Exit 0: stands alone; 1: lists what points outside.
set -euo pipefail
cd "${1:-$(dirname "$0")/..}"

status=0
# Tracked and untracked-but-not-ignored files; vendored test vectors and the lock file are data.
files() {
    git ls-files -z --cached --others --exclude-standard -- \
        ':!Cargo.lock' ':!crates/tlog/tests/testdata/**' ':!scripts/check-standalone.sh' ':!tests/e2e/standalone.rs'
}
hits=$(files | xargs -0 grep -nIE '\.\./shared|\bSPEC(\.md| §| section [0-9])|(^|[^A-Za-z0-9_.~-])/(work|home|root|Users)/[A-Za-z0-9_.-]' 2>/dev/null || true)
if [[ -n $hits ]]; then
    echo "check-standalone: these lines point outside the repository:" >&2
    echo "$hits" >&2
    status=1
fi

# Relative Markdown links must resolve inside the repository.
broken=$(files | tr '\0' '\n' | grep -E '\.md$' | while read -r md; do
    [[ -f $md ]] || continue
    dir=$(dirname "$md")
    grep -noE '\]\([^)[:space:]]+\)' "$md" | while IFS=: read -r line link; do
        target=${link#*](}; target=${target%)}
        case $target in
            http://*|https://*|mailto:*|\#*) continue ;;
        esac
        path=${target%%#*}
        [[ -z $path ]] && continue
        if [[ $path == /* ]]; then
            echo "$md:$line: absolute link $target"
            continue
        fi
        resolved=$(realpath -m "$dir/$path")
        case $resolved in
            "$PWD"|"$PWD"/*) ;;
            *) echo "$md:$line: link leaves the repository: $target"; continue ;;
        esac
        [[ -e $resolved ]] || echo "$md:$line: link to a missing file: $target"
    done
done)
if [[ -n $broken ]]; then
    echo "check-standalone: broken or outside links in Markdown:" >&2
    echo "$broken" >&2
    status=1
fi
[[ $status == 0 ]] && echo "check-standalone: the repository stands alone"
exit $status
