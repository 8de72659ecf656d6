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
# Needs curl or wget, and sha256sum or shasum. POSIX sh: tested with dash and
# bash --posix (tests/cli/install_test.ts).
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
    status=$(curl --silent --show-error --location --retry 2 --output "$2" \
      --write-out '%{http_code}' "$1" 2>"$errors") || status=${status:-000}
  else
    # wget -S writes each response's status line to stderr; the last one counts
    # (redirects come first).
    wget -S -q -O "$2" "$1" 2>"$errors" || true
    status=$(sed -n 's/^ *HTTP\/[0-9.]* \([0-9][0-9]*\).*/\1/p' "$errors" | tail -n 1)
    status=${status:-000}
  fi
  case "$status" in
    200) ;;
    404) fail 1 "not found (HTTP 404): $1: no such release or asset; check LOGIN_ETL_VERSION (releases are tagged vX.Y.Z) and LOGIN_ETL_REPOSITORY or LOGIN_ETL_BASE_URL" ;;
    000) fail 1 "cannot download $1: $(grep -v '^ *$' "$errors" | tail -n 1)" ;;
    *) fail 1 "cannot download $1: HTTP $status" ;;
  esac
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
  latest | v*) ;;
  [0-9]*) version="v$version" ;;
  *) fail 2 "LOGIN_ETL_VERSION=$version is not a release tag: give vX.Y.Z, or latest" ;;
esac

repository=${LOGIN_ETL_REPOSITORY:-$DEFAULT_REPOSITORY}
if [ -n "${LOGIN_ETL_BASE_URL:-}" ]; then
  base=${LOGIN_ETL_BASE_URL%/}
elif [ -n "$repository" ]; then
  base="https://github.com/$repository/releases"
else
  fail 2 "no repository to install from: set LOGIN_ETL_REPOSITORY=owner/name (or LOGIN_ETL_BASE_URL)"
fi
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
# Staged beside the target, so the final mv is a rename within one file system.
staged="$dir/.login-etl.$$.tmp"
cp "$work/$asset" "$staged" 2>/dev/null ||
  fail 1 "cannot write to $dir: run as a user who may, or set LOGIN_ETL_INSTALL_DIR"
chmod 0755 "$staged"
mv -f "$staged" "$dir/login-etl"
staged=""

printf 'Installed %s as %s/login-etl (%s)\n' "$asset" "$dir" "$reported"
case ":${PATH:-}:" in
  *":$dir:"*) ;;
  *) say "$dir is not on your PATH: add it, or run $dir/login-etl" ;;
esac
