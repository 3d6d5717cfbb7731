"""The plain-Python peer of the probe fan-out: the same GET /v1/synced asked of
every address in a file, one after another, a new connection per target (what a
plain loop does), with http.client from the standard library.

    python3 fanout_peer.py ADDRESSES_FILE REPS

Prints one JSON line: every run's wall time in milliseconds, and how many answers
were 200 in all (a run where one was not counts, so the report can say so).
"""

import http.client
import json
import sys
import time


def ask_all(addresses):
    ok = 0
    for address in addresses:
        host, port = address.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            conn.request("GET", "/v1/synced")
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                ok += 1
        finally:
            conn.close()
    return ok


def main():
    path, reps = sys.argv[1], int(sys.argv[2])
    with open(path) as f:
        addresses = [line.strip() for line in f if line.strip()]
    walls, ok = [], 0
    for rep in range(reps):
        started = time.perf_counter()
        ok += ask_all(addresses)
        wall = (time.perf_counter() - started) * 1000.0
        walls.append(wall)
        print(f"python run {rep}: {wall:.1f} ms", file=sys.stderr)
    print(json.dumps({
        "kind": "fanout",
        "system": "python",
        "variant": f"http.client {sys.version.split()[0]}, sequential, new connection per target",
        "targets": len(addresses),
        "walls_ms": walls,
        "ok": ok,
        "asked": len(addresses) * reps,
    }))


if __name__ == "__main__":
    main()
