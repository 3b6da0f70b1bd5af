"""Benchmark: what sealing each worker's secrets costs the control plane (backend/sealing.py).

Seals 1,000 account specs (phone, API hash, a 300-character session, a proxy URL: four fields each, each a
SECRET_KEY token opened and sealed to the worker's key) for one worker, then the same 1,000 again (memoized:
the same token to the same worker is sealed once per process), and opens them as the worker does. No bar: the
figures say what a scan's starts cost on top of their sending.

    .venv/bin/python bench/sealing.py [--specs 1000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.sealing import Sealer
from celery_app.contract import AccountSpec
from common.crypto import SecretBox
from common.sealing import KeyPair
from worker.secrets import WorkerSecrets

SECRET_KEY = "bench-secret-key-0123456789abcdefghijklmnop"
FIELDS = ("phone_enc", "api_hash_enc", "session_enc", "proxy_enc")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--specs", type=int, default=1000)
    args = parser.parse_args()
    box, worker = SecretBox(SECRET_KEY), KeyPair.generate()
    specs = [
        AccountSpec(
            account_id=i,
            phone_enc=box.encrypt(f"+1555{i:07d}"),
            api_id=12345,
            api_hash_enc=box.encrypt("0123456789abcdef0123456789abcdef"),
            session_enc=box.encrypt("1" + "A" * 300),
            proxy_enc=box.encrypt("socks5://user:pass@10.0.0.1:1080"),
        )
        for i in range(1, args.specs + 1)
    ]
    sealer = Sealer(box, SECRET_KEY, lambda _name: worker.public_key)
    started = time.perf_counter()
    sealed = [sealer.for_worker("w1", spec) for spec in specs]
    first = time.perf_counter() - started
    started = time.perf_counter()
    for spec in specs:
        sealer.for_worker("w1", spec)
    again = time.perf_counter() - started
    opener = WorkerSecrets(worker, None, lambda: None)
    started = time.perf_counter()
    for spec in sealed:
        for field in FIELDS:
            opener.decrypt(getattr(spec, field), field)
    opened = time.perf_counter() - started
    n = args.specs
    print(f"sealed {n} specs: {first:.2f} s ({first / n * 1000:.2f} ms a spec, four fields)")
    print(f"the same {n} again (memoized): {again * 1000:.0f} ms ({again / n * 1e6:.0f} µs a spec)")
    print(f"opened on the worker: {opened:.2f} s ({opened / n * 1000:.2f} ms a spec)")


if __name__ == "__main__":
    main()
