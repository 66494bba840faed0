"""Helper for ``test_store.py``: writes to a Store in a loop until it is killed.

    python tests/store_writer.py /tmp/x/hotspot.json [--ballast-kb 512] [--limit N]

With ``--ballast-kb`` it first stores one big document, so every write takes longer. Each
round continues from the highest ``seq`` already stored and makes these changes, each one its
own write unless said otherwise:

- inserts ``{"seq": n}`` into ``records``;
- sets ``counter`` (``key="last"``) to ``n``;
- every 5th round, replaces the ``snapshot`` table with 3 documents ``{"upto": n, "part": i}``;
- every 7th round, inserts two ``pairs`` documents in one batch.

Only after all of them returned it prints ``ack <n>`` and flushes stdout, so an acked round
must survive a ``kill -9``.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hotspot.store import Store  # noqa: E402


def write_rounds(store: Store, limit: int, ballast_kb: int = 0) -> None:
    seq = max((doc["seq"] for doc in store.all("records")), default=0)
    if ballast_kb and not store.all("ballast"):
        # A bigger file makes each write take longer, so a kill is more likely to land in one.
        store.insert("ballast", {"text": "x" * (ballast_kb * 1024)})
    store.upsert("counter", {"key": "last"}, key="last")
    for _ in range(limit):
        seq += 1
        # Non-ASCII text of varying length, so the file size changes from write to write.
        store.insert("records", {"seq": seq, "text": "ñandú " * (seq % 40)})
        store.update("counter", {"value": seq}, key="last")
        if seq % 5 == 0:
            store.replace_table("snapshot", [{"upto": seq, "part": i} for i in range(3)])
        if seq % 7 == 0:
            with store.batch():
                store.insert("pairs", {"seq": seq, "half": 1})
                store.insert("pairs", {"seq": seq, "half": 2})
        print(f"ack {seq}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--ballast-kb", type=int, default=0, help="size of one big document")
    parser.add_argument("--limit", type=int, default=100_000, help="stop after this many rounds")
    args = parser.parse_args(argv)
    with Store(args.path) as store:
        write_rounds(store, args.limit, args.ballast_kb)
    return 0


if __name__ == "__main__":
    sys.exit(main())
