"""Check a running covshift server: /healthz, a websocket frame of its demo run, and a
short run of our own trained to the end (so the run store has something to keep).

Usage: python scripts/smoke_check.py BASE_URL TIMEOUT_SECONDS
Prints the seconds from the call to /healthz answering and to the first frame.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request

from websockets.sync.client import connect


def wait_for(url: str, deadline: float) -> bytes:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bytes(response.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def main(base: str, timeout: float) -> int:
    started = time.monotonic()
    deadline = started + timeout
    wait_for(f"{base}/healthz", deadline)
    print(f"smoke: /healthz answered after {time.monotonic() - started:.1f} s")
    runs = json.loads(wait_for(f"{base}/api/runs", deadline))
    items = runs["runs"] if isinstance(runs, dict) else runs
    if not items:
        print("smoke: no demo run is listed")
        return 1
    run_id = items[0]["id"]
    ws_url = base.replace("http", "ws", 1) + f"/ws/runs/{run_id}"
    with connect(ws_url, open_timeout=10) as websocket:
        while True:
            if time.monotonic() > deadline:
                print("smoke: no frame arrived in time")
                return 1
            message = json.loads(websocket.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("type") == "frame":
                print(
                    f"smoke: first frame (step {message['step']}) after "
                    f"{time.monotonic() - started:.1f} s"
                )
                break
    return train_a_short_run(base, deadline)


def train_a_short_run(base: str, deadline: float) -> int:
    body = json.dumps({"dataset": "spirals", "depth": 1, "width": 8, "steps": 300}).encode()
    request = urllib.request.Request(
        f"{base}/api/runs", data=body, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        run_id = json.loads(response.read())["id"]
    while time.monotonic() < deadline:
        state = json.loads(wait_for(f"{base}/api/runs/{run_id}", deadline))["state"]
        if state == "finished":
            print(f"smoke: a 300-step run of our own finished ({run_id[:8]}...)")
            return 0
        time.sleep(0.3)
    print("smoke: our own run did not finish in time")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], float(sys.argv[2])))
