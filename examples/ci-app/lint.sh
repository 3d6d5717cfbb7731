#!/bin/sh
# Lint: every shell script parses, and the schema has no tabs.
set -eu
src=$(dirname "$0")
for script in "$src"/*.sh; do
    sh -n "$script"
done
if grep -n "$(printf '\t')" "$src/schema.sql"; then
    echo "schema.sql: tabs are not allowed" >&2
    exit 1
fi
echo "lint: ok"
