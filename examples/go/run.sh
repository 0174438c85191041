#!/usr/bin/env bash
# Builds and runs examples/go offline, with its arguments: GOPATH mode over Debian's Go libraries (.ci/system-packages
# installs them), this checkout in a throwaway GOPATH at its module path, so no Go module proxy is needed.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
debian_gopath=/usr/share/gocode
if ! command -v go >/dev/null || [ ! -d "$debian_gopath/src/google.golang.org/grpc" ]; then
  echo "run.sh: Go and its gRPC libraries are not installed: run .ci/system-packages" >&2
  exit 1
fi
gopath="$(mktemp -d)"
trap 'rm -rf "$gopath"' EXIT
mkdir -p "$gopath/src/example.com"
ln -s "$root" "$gopath/src/example.com/mailgateway"
# `run.sh watch …` runs examples/go/watch (WatchEvents, resuming from a stored cursor); anything else, examples/go.
program=send package=example.com/mailgateway/examples/go
if [ "${1:-}" = watch ]; then
  program=watch package=example.com/mailgateway/examples/go/watch
  shift
fi
# -trimpath keeps the throwaway path out of the build cache's keys, so a second run rebuilds nothing.
GO111MODULE=off GOFLAGS="" GOPATH="$gopath:$debian_gopath" \
  go build -trimpath -o "$gopath/$program" "$package"
"$gopath/$program" "$@"
