#!/bin/sh
# The tests: the migrated database holds the expected users.
set -eu
count=$(psql -v ON_ERROR_STOP=1 -tA -c 'SELECT count(*) FROM users')
echo "users in the database: $count (expected ${EXPECTED_USERS})"
mkdir -p results
echo "users=$count expected=${EXPECTED_USERS}" > results/users.txt
[ "$count" = "$EXPECTED_USERS" ]
