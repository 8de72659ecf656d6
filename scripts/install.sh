#!/bin/sh
# Installs the login-etl binary of a GitHub release for this OS and CPU:
#
#   curl -fsSL https://github.com/OWNER/NAME/releases/latest/download/install.sh | sh
#
# It downloads the release asset (named as `make build-all` and release.yml
# name them, e.g. login-etl-x86_64-unknown-linux-gnu) and its .sha256, refuses
# the asset unless its SHA-256 matches, verifies its build provenance with
# `gh attestation verify` when gh is on PATH, checks that it runs here, and
# only then moves it into place as `login-etl` (mode 0755; a rename, so a
# running login-etl is never half-overwritten). Nothing is installed when any
# check fails.
#
# Settings (environment variables):
#   LOGIN_ETL_VERSION      release tag, e.g. v0.1.0 (default: the latest release)
#   LOGIN_ETL_INSTALL_DIR  where to put login-etl (default: /usr/local/bin as
#                          root, else ~/.local/bin)
#   LOGIN_ETL_REPOSITORY   owner/name of the GitHub repository with the
#                          releases (release.yml writes its own into the
#                          install.sh it attaches to a release)
#   LOGIN_ETL_BASE_URL     the releases URL (default:
#                          https://github.com/$LOGIN_ETL_REPOSITORY/releases),
#                          serving <base>/latest/download/<asset> and
#                          <base>/download/<tag>/<asset> as GitHub does: a mirror
#
# An https base URL is fetched over HTTPS only, redirects included (a redirect
# to http:// is refused); an http:// base is allowed, with a warning, since
# the checksum then comes from the same unauthenticated server as the asset.
# The binary is staged in a fresh mktemp file beside its target, never at a
# name another user could plant first, and a directory other users may write
# is refused unless it is root's and sticky (as /tmp is).
#
# Needs curl or wget, sha256sum or shasum, and ls.
# POSIX sh: tested with dash and bash --posix (tests/cli/install_test.ts).
set -eu

# release.yml replaces this line with the repository that built the release.
DEFAULT_REPOSITORY=""

PROGRAM="install.sh"

# One line on stderr, then exit: 2 for a setting to fix, 1 for anything else.
fail() {
  printf '%s: %s\n' "$PROGRAM" "$2" >&2
  exit "$1"
}

say() {
  printf '%s: %s\n' "$PROGRAM" "$1" >&2
}

# The Rust target triple of this machine, as deno compile --target names it.
target_triple() {
  os=$(uname -s)
  arch=$(uname -m)
  case "$arch" in
    x86_64 | amd64) arch=x86_64 ;;
    aarch64 | arm64) arch=aarch64 ;;
    *) fail 1 "no login-etl release for the CPU $arch: builds exist for x86_64 and aarch64 (arm64)" ;;
  esac
  case "$os" in
    Linux) echo "$arch-unknown-linux-gnu" ;;
    Darwin) echo "$arch-apple-darwin" ;;
    *) fail 1 "no login-etl release for the OS $os: builds exist for Linux and macOS here (Windows: download login-etl-x86_64-pc-windows-msvc.exe from the release page)" ;;
  esac
}

# download URL FILE: exit 0 with the body in FILE, or fail with one line
# naming the URL and the HTTP status or the transport error.
download() {
  errors="$work/download.err"
  if has curl; then
    # With an https base, curl refuses any other protocol, in redirects too;
    # it then exits 1 (unsupported protocol), the one way here to a refusal.
    curl_exit=0
    # shellcheck disable=SC2086 # $curl_protocols is two options or none
    status=$(curl --silent --show-error --location --retry 2 $curl_protocols --output "$2" \
      --write-out '%{http_code}' "$1" 2>"$errors") || curl_exit=$?
    status=${status:-000}
    if [ -n "$https_only" ] && [ "$curl_exit" = 1 ]; then downgraded "$1"; fi
  else
    # wget -S writes each response's status line to stderr; the last one counts
    # (redirects come first).
    wget -S -q -O "$2" "$1" 2>"$errors" || true
    status=$(sed -n 's/^ *HTTP\/[0-9.]* \([0-9][0-9]*\).*/\1/p' "$errors" | tail -n 1)
    status=${status:-000}
    # wget cannot be told to follow HTTPS redirects only (--https-only is for
    # recursive mode), but -S shows every Location it followed: one to http://
    # refuses what was downloaded, before it is used.
    if [ -n "$https_only" ] && grep -qi '^ *Location: *http:' "$errors"; then downgraded "$1"; fi
  fi
  case "$status" in
    200) ;;
    404) fail 1 "not found (HTTP 404): $1: no such release or asset; check LOGIN_ETL_VERSION (releases are tagged vX.Y.Z) and LOGIN_ETL_REPOSITORY or LOGIN_ETL_BASE_URL" ;;
    000) fail 1 "cannot download $1: $(grep -v '^ *$' "$errors" | tail -n 1)" ;;
    *) fail 1 "cannot download $1: HTTP $status" ;;
  esac
}

# A download from an https base that was sent to plain HTTP: refused.
downgraded() {
  fail 1 "refused $1: the server redirected it to plain HTTP, where anyone on the way may change it; an https download stays on HTTPS; nothing installed"
}

# The SHA-256 of a file, lowercase hex (the tool is checked for up front).
sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d ' ' -f 1
  else
    shasum -a 256 "$1" | cut -d ' ' -f 1
  fi
}

has() {
  command -v "$1" >/dev/null 2>&1
}

has curl || has wget || fail 1 "need curl or wget to download login-etl"
has sha256sum || has shasum || fail 1 "need sha256sum or shasum to verify the download"

version=${LOGIN_ETL_VERSION:-latest}
case "$version" in
  [0-9]*) version="v$version" ;;
esac
# vX.Y.Z with an optional -prerelease: the tag goes into the URL's path, so
# nothing else (a / or .. would reach another repository's assets). The first
# test also refuses a newline, which grep would read as a second line.
case "$version" in
  latest) ;;
  *[!0-9A-Za-z.-]*) fail 2 "LOGIN_ETL_VERSION is not a release tag: give vX.Y.Z, or latest" ;;
  *) printf '%s\n' "$version" | grep -Eq '^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$' ||
    fail 2 "LOGIN_ETL_VERSION=$version is not a release tag: give vX.Y.Z, or latest" ;;
esac

repository=${LOGIN_ETL_REPOSITORY:-$DEFAULT_REPOSITORY}
if [ -n "${LOGIN_ETL_BASE_URL:-}" ]; then
  base=${LOGIN_ETL_BASE_URL%/}
elif [ -n "$repository" ]; then
  base="https://github.com/$repository/releases"
else
  fail 2 "no repository to install from: set LOGIN_ETL_REPOSITORY=owner/name (or LOGIN_ETL_BASE_URL)"
fi
curl_protocols=""
https_only=""
case "$base" in
  https://*)
    https_only=yes
    curl_protocols="--proto =https --proto-redir =https"
    ;;
  http://*) say "warning: downloading over plain HTTP: only the checksum from the same server protects this download" ;;
  *) fail 2 "LOGIN_ETL_BASE_URL=$base is not an https:// URL" ;;
esac
if [ -z "$repository" ]; then
  # The repository gh checks the attestation against, from a GitHub URL.
  case "$base" in
    https://github.com/*/*/releases) repository=${base#https://github.com/} && repository=${repository%/releases} ;;
  esac
fi

if [ -n "${LOGIN_ETL_INSTALL_DIR:-}" ]; then
  dir=$LOGIN_ETL_INSTALL_DIR
elif [ "$(id -u)" = 0 ]; then
  dir=/usr/local/bin
else
  dir="${HOME:?HOME is not set: set LOGIN_ETL_INSTALL_DIR}/.local/bin"
fi

triple=$(target_triple) || exit
asset="login-etl-$triple"
if [ "$version" = latest ]; then
  url="$base/latest/download/$asset"
else
  url="$base/download/$version/$asset"
fi

work=$(mktemp -d)
staged=""
cleanup() {
  rm -rf "$work"
  if [ -n "$staged" ]; then rm -f "$staged"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "downloading $url"
download "$url" "$work/$asset"
download "$url.sha256" "$work/$asset.sha256"

# The .sha256 file is `sha256sum` output: the hex digest, then the file name.
expected=$(cut -d ' ' -f 1 <"$work/$asset.sha256" | head -n 1 | tr 'A-F' 'a-f')
actual=$(sha256_of "$work/$asset")
case "$expected" in
  *[!0-9a-f]* | "") fail 1 "refused $asset: $url.sha256 holds no SHA-256; nothing installed" ;;
esac
if [ ${#expected} -ne 64 ]; then
  fail 1 "refused $asset: $url.sha256 holds no SHA-256; nothing installed"
fi
if [ "$expected" != "$actual" ]; then
  fail 1 "refused $asset: its SHA-256 is $actual but the release says $expected; nothing installed"
fi
say "checksum ok: sha256 $actual"

if has gh; then
  if [ -z "$repository" ]; then
    fail 2 "gh is on PATH but the repository to check the attestation against is unknown: set LOGIN_ETL_REPOSITORY=owner/name"
  fi
  if ! gh attestation verify "$work/$asset" --repo "$repository" >"$work/gh.out" 2>&1; then
    fail 1 "refused $asset: gh attestation verify --repo $repository failed ($(grep -v '^ *$' "$work/gh.out" | tail -n 1)); nothing installed"
  fi
  say "build attestation ok: built by $repository's workflow (gh attestation verify)"
else
  say "gh not found: skipped the build attestation check (the checksum was verified); install gh to check it"
fi

chmod 0755 "$work/$asset"
if ! reported=$("$work/$asset" --version 2>&1); then
  fail 1 "refused $asset: it does not run on this machine ($(printf '%s\n' "$reported" | tail -n 1)); nothing installed"
fi
# A pinned release must be that version: an asset re-uploaded from another
# build passes its own checksum but is not what was asked for.
if [ "$version" != latest ]; then
  first=$(printf '%s\n' "$reported" | head -n 1)
  built=${first#login-etl }
  built=${built%% *}
  [ "v$built" = "$version" ] ||
    fail 1 "refused $asset: it reports $first, not $version; nothing installed"
fi

mkdir -p "$dir" 2>/dev/null || fail 1 "cannot create $dir: set LOGIN_ETL_INSTALL_DIR to a directory you may write"
# Another user who may write the directory could swap the staged file (or
# login-etl itself) before or after the rename; in a sticky directory of
# root's (like /tmp) no one may rename or delete another's files.
set -f
# shellcheck disable=SC2046 # the fields of ls -ldn: mode, links, owner's uid
set -- $(ls -ldn "$dir/." 2>/dev/null)
set +f
case "${1:-}" in
  ?????w* | ????????w*)
    case "$1:${3:-}" in
      ?????????[tT]*:0) ;;
      *) fail 1 "refused $dir: others may write it (mode $1, owner uid ${3:-?}) and it is not root's sticky directory, so they could replace login-etl; set LOGIN_ETL_INSTALL_DIR to a directory only you may write" ;;
    esac
    ;;
esac
# Staged beside the target, so the final mv is a rename within one file
# system, in a file mktemp creates fresh (never one planted at a known name).
staged=$(mktemp "$dir/.login-etl.XXXXXX" 2>/dev/null) ||
  fail 1 "cannot write to $dir: run as a user who may, or set LOGIN_ETL_INSTALL_DIR"
cat "$work/$asset" >"$staged" ||
  fail 1 "cannot write to $dir: run as a user who may, or set LOGIN_ETL_INSTALL_DIR"
chmod 0755 "$staged"
mv -f "$staged" "$dir/login-etl"
staged=""

printf 'Installed %s as %s/login-etl (%s)\n' "$asset" "$dir" "$reported"
case ":${PATH:-}:" in
  *":$dir:"*) ;;
  *) say "$dir is not on your PATH: add it, or run $dir/login-etl" ;;
esac
