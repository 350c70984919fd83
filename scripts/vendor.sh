#!/usr/bin/env bash
# Rebuilds each crate under vendor/ from its crates.io release: download (cached, sha256
# checked), prune, apply vendor/<crate>/hooklake.patch. vendor/README.md says why.
#
#   scripts/vendor.sh           rewrite vendor/<crate> for each crate (left alone if equal)
#   scripts/vendor.sh --check   build into a temporary directory and compare with the
#                               committed trees; exit 1 listing what differs
set -euo pipefail
source "$(dirname "$0")/lib.sh"

CRATES=(rdkafka-sys tansu-storage tansu-broker iceberg-catalog-sql)

# Sets VERSION, SHA256 (the .crate's sha256 as crates.io publishes it: the `cksum` of this
# version in the registry index) and PRUNE: what the build does not read, relative to the
# crate root. Everything else in the published crate is kept. vendor/README.md lists the
# same paths; change both together.
crate_settings() {
  case "$1" in
    rdkafka-sys)
      VERSION=4.10.0+2.12.1
      SHA256=e234cf318915c1059d4921ef7f75616b5219b10b46e9f3a511a15eb4b56a3f77
      PRUNE=(
        # the crate's own files that are not part of its build
        Cargo.lock Cargo.toml.orig CONTRIBUTING.md changelog.md readme_template
        simple_producer.rs update-bindings.sh
        # librdkafka: tests, examples, the mklove/Makefile build system, Debian and Windows
        # packaging, documentation
        librdkafka/tests librdkafka/examples librdkafka/mklove librdkafka/debian
        librdkafka/win32 librdkafka/Makefile librdkafka/configure librdkafka/configure.self
        librdkafka/dev-conf.sh librdkafka/lds-gen.py librdkafka/service.yml
        librdkafka/vcpkg.json librdkafka/Doxyfile librdkafka/mainpage.doxy
        librdkafka/CHANGELOG.md librdkafka/CODE_OF_CONDUCT.md librdkafka/CONFIGURATION.md
        librdkafka/CONTRIBUTING.md librdkafka/INTRODUCTION.md librdkafka/STATISTICS.md
        librdkafka/README.win32
        # librdkafka's packaging, except packaging/cmake (which CMakeLists.txt reads)
        librdkafka/packaging/RELEASE.md librdkafka/packaging/get_version.py
        librdkafka/packaging/alpine librdkafka/packaging/archlinux librdkafka/packaging/cp
        librdkafka/packaging/debian librdkafka/packaging/homebrew
        librdkafka/packaging/mingw-w64 librdkafka/packaging/nuget librdkafka/packaging/rpm
        librdkafka/packaging/tools
      )
      ;;
    tansu-storage)
      VERSION=0.6.0
      SHA256=720d2ed8e6010c70f7f06e5af5a7274ebbf6e42fdcd9e46de542b10dc4d2f35d
      # the crate's own lock file, and its integration tests (they run tansu's memory
      # storage, not the SQLite storage the patch changes)
      PRUNE=(Cargo.lock Cargo.toml.orig tests)
      ;;
    tansu-broker)
      VERSION=0.6.0
      SHA256=93c1e91b40c2a706dfdbe9a795c08c70918c874ad23f6e0e87564cc0a180e720
      # the crate's own lock file, its original manifest, and its integration tests (they
      # need a PostgreSQL with tansu's credentials; hooklake's suite tests the coordinator
      # through `hooklake broker`)
      PRUNE=(Cargo.lock Cargo.toml.orig tests)
      ;;
    iceberg-catalog-sql)
      VERSION=0.10.1
      SHA256=0f0c1140a8520c39d7f90bf3b6bcdcedecc5f835affac163a589872a413d32c6
      # the crate's own lock file, its original manifest and the list of its public API
      PRUNE=(Cargo.lock Cargo.toml.orig public-api.txt)
      ;;
    *) echo "$0: no settings for crate $1" >&2; exit 2 ;;
  esac
}

check=false
case "${1:-}" in
  "") ;;
  --check) check=true ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

# The crate's file in the registry index (crates.io's layout for names of 4 or more
# characters: the first two, the next two, the name).
index_path() {
  echo "${1:0:2}/${1:2:2}/$1"
}

# The .crate, downloaded once into the cache; a cached copy is checked on every use.
fetch_crate() {
  if [ -f "$CACHED" ] && [ "$(sha_of "$CACHED")" = "$SHA256" ]; then
    return 0
  fi
  say "downloading $CRATE $VERSION from crates.io"
  mkdir -p "$(dirname "$CACHED")"
  local part="$CACHED.part" index_sum
  curl -fsSL --retry 3 -o "$part" "$URL"
  # The pinned sum above must be the one the registry publishes, and the file must match it.
  index_sum="$(curl -fsSL --retry 3 "$INDEX_URL" | python3 -c '
import json, sys
for line in sys.stdin:
    v = json.loads(line)
    if v["vers"] == sys.argv[1]:
        print(v["cksum"])' "$VERSION")" || index_sum="(index not read)"
  if [ "$index_sum" != "$SHA256" ]; then
    echo "the registry index gives sha256 '${index_sum}' for $CRATE $VERSION, this script pins $SHA256" >&2
    rm -f "$part"
    exit 1
  fi
  if [ "$(sha_of "$part")" != "$SHA256" ]; then
    echo "$URL: sha256 $(sha_of "$part"), expected $SHA256" >&2
    rm -f "$part"
    exit 1
  fi
  mv "$part" "$CACHED"
}

# The vendored tree, built into $1: the published crate, pruned, patched.
build_tree() {
  local out="$1" unpack="$1.unpack" path
  mkdir -p "$unpack"
  tar -xzf "$CACHED" -C "$unpack" --no-same-owner
  mv "$unpack/$CRATE-$VERSION" "$out"
  rmdir "$unpack"
  for path in "${PRUNE[@]}"; do
    [ -e "$out/$path" ] || { echo "prune list: $path is not in the crate" >&2; exit 1; }
    rm -rf "${out:?}/$path"
  done
  cp "$patch_copy" "$out/hooklake.patch"
  # No fuzz: the patch must apply to exactly the context it was made against.
  patch -s -p1 --fuzz=0 --forward --no-backup-if-mismatch -d "$out" <"$patch_copy" \
    || { echo "hooklake.patch does not apply to $CRATE $VERSION" >&2; exit 1; }
  # Git keeps no empty directory.
  find "$out" -type d -empty -delete
}

# Prints what differs between two trees: contents, files on one side only, executable bits.
compare_trees() {
  local a="$1" b="$2" rc=0
  diff -rq "$a" "$b" || rc=$?
  [ "$rc" -le 1 ] || return "$rc"
  comm -3 <(cd "$a" && find . -type f -perm -u+x | sort) <(cd "$b" && find . -type f -perm -u+x | sort) \
    | sed 's#^[[:space:]]*\./#executable bit differs: #'
}

for tool in curl patch python3; do
  command -v "$tool" >/dev/null || { echo "$0: $tool not found (apt-get install $tool)" >&2; exit 1; }
done
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=false
for CRATE in "${CRATES[@]}"; do
  crate_settings "$CRATE"
  URL="https://static.crates.io/crates/$CRATE/$CRATE-$VERSION.crate"
  INDEX_URL="https://index.crates.io/$(index_path "$CRATE")"
  CACHED="$HOOKLAKE_CACHE/crates/$CRATE-$VERSION.crate"
  DEST="$REPO/vendor/$CRATE"
  fetch_crate
  # The patch is read from the tree this script may replace.
  patch_copy="$work/$CRATE.patch"
  cp "$DEST/hooklake.patch" "$patch_copy"
  build_tree "$work/$CRATE"

  differences="$(compare_trees "$work/$CRATE" "$DEST" | sed "s#$work/$CRATE#<script output>#g; s#$REPO/##g")"
  if [ -z "$differences" ]; then
    say "vendor/$CRATE is $CRATE $VERSION from crates.io, pruned, with hooklake.patch applied"
  elif $check; then
    echo "vendor/$CRATE differs from what scripts/vendor.sh builds (<script output>):" >&2
    echo "$differences" >&2
    failed=true
  else
    say "rewriting vendor/$CRATE"
    rm -rf "$DEST"
    mv "$work/$CRATE" "$DEST"
    say "done; review with: git status vendor/$CRATE"
  fi
done
! $failed
