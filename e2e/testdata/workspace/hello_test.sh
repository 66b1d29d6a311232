#!/usr/bin/env bash
# Runs the hello binary and checks what it prints, and that the generated
# marker file arrived whole.
set -euo pipefail

pkg="e2e/testdata/workspace"
out="$("${pkg}/hello")"
if [[ "${out}" != "hello from the sealcache e2e workspace" ]]; then
  echo "hello printed an unexpected line: ${out}" >&2
  exit 1
fi

lines="$(grep -c '^SEALCACHE-E2E-MARKER line ' "${pkg}/marker.txt")"
if [[ "${lines}" != 5000 ]]; then
  echo "marker.txt has ${lines} marker lines, want 5000" >&2
  exit 1
fi
echo "hello_test: ok"
