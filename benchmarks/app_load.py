"""Load test of the web app on loopback: N concurrent clients x M requests, bad files mixed in.

    python benchmarks/app_load.py --clients 8 --requests 25

Every 5th request of each client uploads a file that is not an image. Checks that every good request
gets the same label as the command line's predict, every bad one an error, and that the server is still
up at the end; prints p50 / p95 latency of the good requests (Grad-CAM on).
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def label_of(answer: str) -> str | None:
    """The app's answer as ``predict``'s label: its heading says what to do (``melanoma.app.verdict_text``); None
    for a refusal."""
    return ("malignant" if answer.startswith("## See a dermatologist") else
            "benign" if answer.startswith("## Looks benign") else None)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=25)
    args = ap.parse_args()
    from gradio_client import Client, handle_file

    from melanoma.app import MAX_FILE_SIZE, build_app
    from melanoma.nn.torch_engine import TorchPredictor

    images = sorted(SAMPLES.glob("*/*.jpg"))
    expected = {Path(r["path"]).name: r["label"] for r in TorchPredictor().predict_paths(images)}
    bad = Path(tempfile.mkdtemp()) / "bad.jpg"
    bad.write_bytes(b"<html>not an image</html>")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = build_app()
    demo.queue(default_concurrency_limit=2).launch(server_name="127.0.0.1", server_port=port,
                                                   prevent_thread_lock=True, max_file_size=MAX_FILE_SIZE, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    latencies, wrong, bad_ok, bad_errors, failures = [], [], [], 0, []
    lock = threading.Lock()

    def client_loop(c: int) -> None:
        nonlocal bad_errors
        client = Client(url, verbose=False)
        for k in range(args.requests):
            if k % 5 == 4:
                try:
                    client.predict(handle_file(str(bad)), api_name="/predict")
                    with lock:
                        bad_ok.append(k)
                except Exception:  # noqa: BLE001 - the error the server must return
                    with lock:
                        bad_errors += 1
                continue
            img = images[(c * args.requests + k) % len(images)]
            t = time.perf_counter()
            try:
                verdict, _, _ = client.predict(handle_file(str(img)), api_name="/predict")
            except Exception as e:  # noqa: BLE001
                with lock:
                    failures.append(f"{img.name}: {e}")
                continue
            dt = time.perf_counter() - t
            got = label_of(verdict)
            with lock:
                latencies.append(dt)
                if got != expected[img.name]:
                    wrong.append(img.name)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client_loop, args=(c,)) for c in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    try:  # one more request after the storm
        answer = Client(url, verbose=False).predict(handle_file(str(images[0])), api_name="/predict")[0]
        still_up = answer.startswith("## ")  # an answer of the app's own, not an error
    except Exception:  # noqa: BLE001
        still_up = False
    demo.close()
    lat = np.array(latencies)
    report = {"clients": args.clients, "requests_per_client": args.requests, "good_requests": len(lat),
              "bad_requests": bad_errors + len(bad_ok), "good_answered_correctly": len(lat) - len(wrong),
              "good_failed": len(failures), "bad_answered_with_error": bad_errors, "server_up_after": bool(still_up),
              "p50_s": round(float(np.percentile(lat, 50)), 3), "p95_s": round(float(np.percentile(lat, 95)), 3),
              "throughput_req_per_s": round((len(lat) + bad_errors) / wall, 2), "wall_s": round(wall, 1)}
    report["first_failures"] = failures[:3]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
