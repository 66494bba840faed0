"""Tests for hotspot.store: real files in tmp_path, a real full disk, real kill -9."""

import errno
import json
import os
import random
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import mounted_tmpfs

from hotspot.errors import StoreCorrupt, StoreError
from hotspot.store import Store

WRITER = Path(__file__).with_name("store_writer.py")
BALLAST_KB = int(os.environ.get("STORE_TEST_BALLAST_KB", 512))


@pytest.fixture
def path(tmp_path):
    return tmp_path / "hotspot.json"


@pytest.fixture
def store(path):
    with Store(path) as store:
        yield store


def on_disk(path):
    return json.loads(path.read_bytes())


def count_writes(store, monkeypatch):
    """Spy (not a mock) on the store's disk writes: they still happen, and are counted."""
    writes = []
    real_save = store._storage._save

    def save(data):
        writes.append(1)
        real_save(data)

    monkeypatch.setattr(store._storage, "_save", save)
    return writes


# -- basics -----------------------------------------------------------------------------------


def test_missing_file_is_an_empty_store_and_is_created_on_first_write(path):
    store = Store(path)
    assert store.path == path
    assert store.all("resources") == []
    assert store.get("resources", id="x") is None
    assert not path.exists()
    store.insert("resources", {"id": "x"})
    assert on_disk(path) == {"resources": {"1": {"id": "x"}}}


def test_missing_folder_is_a_store_error(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        Store(tmp_path / "nope" / "hotspot.json")


def test_insert_get_find_all(store):
    assert store.insert("resources", {"id": "a", "type": "guide", "year": 2024}) == 1
    assert store.insert("resources", {"id": "b", "type": "guide", "year": 2023}) == 2
    assert store.insert("resources", {"id": "c", "type": "audio", "year": 2024}) == 3
    assert store.get("resources", id="b") == {"id": "b", "type": "guide", "year": 2023}
    assert store.get("resources", id="zzz") is None
    assert [d["id"] for d in store.find("resources", type="guide")] == ["a", "b"]
    assert [d["id"] for d in store.find("resources", type="guide", year=2024)] == ["a"]
    assert store.find("resources", type="video") == []
    assert [d["id"] for d in store.find("resources")] == ["a", "b", "c"]
    assert [d["id"] for d in store.all("resources")] == ["a", "b", "c"]
    assert store.all("other") == []


def test_returned_and_inserted_documents_are_copies(store):
    doc = {"id": "a", "tags": ["radio"], "title": {"en": "Radio"}}
    store.insert("resources", doc)
    doc["tags"].append("inserted-then-changed")
    got = store.get("resources", id="a")
    got["tags"].append("changed-by-caller")
    got["title"]["en"] = "changed"
    store.all("resources")[0]["tags"].clear()
    store.find("resources", id="a")[0]["title"].clear()
    assert store.get("resources", id="a") == {"id": "a", "tags": ["radio"], "title": {"en": "Radio"}}
    assert type(got) is dict


def test_upsert_inserts_then_updates_keeping_other_fields(store):
    store.upsert("users", {"name": "ana", "role": "admin"}, name="ana")
    store.upsert("users", {"name": "ana", "lang": "es"}, name="ana")
    assert store.all("users") == [{"name": "ana", "role": "admin", "lang": "es"}]


def test_update_and_remove_return_counts(store):
    for i in range(4):
        store.insert("t", {"i": i, "even": i % 2 == 0})
    assert store.update("t", {"seen": True}, even=True) == 2
    assert [d["i"] for d in store.find("t", seen=True)] == [0, 2]
    assert store.update("t", {"seen": True}, i=99) == 0
    assert store.remove("t", even=False) == 2
    assert store.remove("t", i=99) == 0
    assert [d["i"] for d in store.all("t")] == [0, 2]


def test_changes_that_match_nothing_do_not_write(store, path, monkeypatch):
    store.insert("t", {"i": 1})
    writes = count_writes(store, monkeypatch)
    assert store.update("t", {"x": 1}, i=2) == 0
    assert store.remove("t", i=2) == 0
    assert writes == []


def test_changes_need_a_match(store):
    store.insert("t", {"i": 1})
    with pytest.raises(ValueError):
        store.remove("t")
    with pytest.raises(ValueError):
        store.update("t", {"x": 1})
    with pytest.raises(ValueError):
        store.upsert("t", {"x": 1})
    with pytest.raises(TypeError):
        store.insert("t", ["not", "a", "dict"])
    assert store.all("t") == [{"i": 1}]


def test_replace_table_is_one_write(store, path, monkeypatch):
    store.insert("taxonomy", {"id": "old"})
    store.insert("resources", {"id": "r"})
    writes = count_writes(store, monkeypatch)
    store.replace_table("taxonomy", [{"id": "a"}, {"id": "b"}])
    assert len(writes) == 1
    assert store.all("taxonomy") == [{"id": "a"}, {"id": "b"}]
    assert on_disk(path)["taxonomy"] == {"1": {"id": "a"}, "2": {"id": "b"}}
    store.replace_table("taxonomy", [])
    assert store.all("taxonomy") == []
    assert store.all("resources") == [{"id": "r"}]


def test_meta(store):
    assert store.get_meta("library_version") is None
    assert store.get_meta("library_version", 0) == 0
    store.set_meta("library_version", 1)
    store.set_meta("library_version", 2)
    store.set_meta("languages", ["en", "es"])
    store.get_meta("languages").append("fr")
    assert store.get_meta("library_version") == 2
    assert store.get_meta("languages") == ["en", "es"]
    assert len(store.all("meta")) == 2


def test_reopen_sees_the_data(path):
    with Store(path) as store:
        store.insert("resources", {"id": "a", "title": {"es": "Radio comunitaria: ñandú"}})
        store.set_meta("installed", True)
    assert "ñandú".encode() in path.read_bytes()  # UTF-8, not \u escapes
    with Store(path) as store:
        assert store.get("resources", id="a")["title"]["es"] == "Radio comunitaria: ñandú"
        assert store.get_meta("installed") is True
        assert store.insert("resources", {"id": "b"}) == 2


def test_closed_store_refuses_work(path):
    store = Store(path)
    store.close()
    store.close()  # twice is fine
    with pytest.raises(StoreError, match="closed"):
        store.all("t")


def test_write_replaces_the_file_and_leaves_no_temp_files(store, path):
    store.insert("t", {"i": 1})
    inode = path.stat().st_ino
    store.insert("t", {"i": 2})
    assert path.stat().st_ino != inode  # a new file was renamed over the old one
    assert os.listdir(path.parent) == ["hotspot.json"]


def test_file_mode_is_kept(store, path):
    store.insert("t", {"i": 1})
    path.chmod(0o600)
    store.insert("t", {"i": 2})
    assert path.stat().st_mode & 0o777 == 0o600


def test_opening_removes_only_our_stale_temp_files(tmp_path, path):
    (tmp_path / ".hotspot.json.tmp-abc123").write_text('{"half": ')
    (tmp_path / ".other.json.tmp-abc123").write_text("keep")
    (tmp_path / "notes.txt").write_text("keep")
    Store(path)
    assert sorted(os.listdir(tmp_path)) == [".other.json.tmp-abc123", "notes.txt"]


def test_unserializable_value_is_refused_and_nothing_changes(store, path):
    store.insert("t", {"i": 1})
    before = path.read_bytes()
    with pytest.raises(TypeError):
        store.insert("t", {"i": 2, "when": object()})
    with pytest.raises(ValueError):
        store.update("t", {"x": float("nan")}, i=1)
    assert path.read_bytes() == before
    assert store.all("t") == [{"i": 1}]
    assert store.insert("t", {"i": 3}) == 2


def test_threads_share_one_store(store):
    def add(worker):
        for i in range(25):
            store.insert("t", {"worker": worker, "i": i})

    threads = [threading.Thread(target=add, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store.all("t")) == 100
    assert len(Store(store.path).all("t")) == 100


# -- batch ------------------------------------------------------------------------------------


def test_batch_writes_once_at_the_end(store, path, monkeypatch):
    store.insert("t", {"i": 0})
    before = path.read_bytes()
    writes = count_writes(store, monkeypatch)
    with store.batch() as same:
        assert same is store
        store.insert("t", {"i": 1})
        store.update("t", {"x": 1}, i=0)
        store.set_meta("v", 1)
        store.replace_table("taxonomy", [{"id": "a"}])
        with store.batch():  # nested: still nothing on disk at its exit
            store.insert("t", {"i": 2})
        assert store.get("t", i=2) == {"i": 2}  # visible in memory
        assert path.read_bytes() == before
    assert len(writes) == 1
    with Store(path) as reopened:
        assert reopened.all("t") == [{"i": 0, "x": 1}, {"i": 1}, {"i": 2}]
        assert reopened.get_meta("v") == 1
        assert reopened.all("taxonomy") == [{"id": "a"}]


def test_batch_without_changes_does_not_write(store, monkeypatch):
    store.insert("t", {"i": 0})
    writes = count_writes(store, monkeypatch)
    with store.batch():
        store.all("t")
        store.remove("t", i=5)
    assert writes == []


def test_batch_that_raises_writes_nothing_and_restores_memory(store, path):
    store.insert("t", {"i": 0, "tags": ["a"]})
    before = path.read_bytes()
    with pytest.raises(KeyError):
        with store.batch():
            store.insert("t", {"i": 1})
            store.update("t", {"tags": ["changed"]}, i=0)
            store.remove("t", i=0)
            store.set_meta("v", 1)
            raise KeyError("boom")
    assert path.read_bytes() == before
    assert store.all("t") == [{"i": 0, "tags": ["a"]}]
    assert store.get_meta("v") is None
    assert store.insert("t", {"i": 2}) == 2  # TinyDB's next id was rolled back too
    assert on_disk(path)["t"] == {"1": {"i": 0, "tags": ["a"]}, "2": {"i": 2}}


def test_failed_inner_batch_abandons_the_outer_one(store, path):
    store.insert("t", {"i": 0})
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not saved"):
        with store.batch():
            store.insert("t", {"i": 1})
            try:
                with store.batch():
                    store.insert("t", {"i": 2})
                    raise RuntimeError("inner")
            except RuntimeError:
                pass
            store.insert("t", {"i": 3})
    assert path.read_bytes() == before
    assert store.all("t") == [{"i": 0}]


def test_unserializable_value_in_a_batch_fails_at_the_end(store, path):
    store.insert("t", {"i": 0})
    before = path.read_bytes()
    with pytest.raises(TypeError):
        with store.batch():
            store.insert("t", {"i": 1})
            store.insert("t", {"i": 2, "bad": {1, 2}})
    assert path.read_bytes() == before
    assert store.all("t") == [{"i": 0}]


def test_other_threads_wait_for_a_batch(store):
    store.insert("t", {"i": 0})
    seen = []
    started = threading.Event()

    def reader():
        started.set()
        seen.append(len(store.all("t")))

    with store.batch():
        store.insert("t", {"i": 1})
        thread = threading.Thread(target=reader)
        thread.start()
        started.wait(5)
        thread.join(0.2)  # must still be blocked on the lock
        assert thread.is_alive()
        store.insert("t", {"i": 2})
    thread.join(5)
    assert seen == [3]


# -- corrupt files ----------------------------------------------------------------------------

CORRUPT = {
    "garbage": b"this is not json \x00\x01",
    "truncated": b'{"resources":{"1":{"id":"radio","title":{"en":"Rad',
    "empty": b"",
    "array": b'[{"id": "radio"}]',
    "null": b"null",
    "not-utf8": b'{"resources":{"1":{"id":"\xff\xfe"}}}',
    "table-not-object": b'{"resources": [1, 2]}',
}


@pytest.mark.parametrize("content", CORRUPT.values(), ids=CORRUPT.keys())
def test_corrupt_file_fails_at_open_and_is_kept(tmp_path, path, content):
    path.write_bytes(content)
    with pytest.raises(StoreCorrupt) as caught:
        Store(path)
    message = caught.value.message
    assert str(path) in message
    assert "kept unchanged" in message
    assert "move it away" in message and "backup" in message
    assert path.read_bytes() == content
    assert os.listdir(tmp_path) == ["hotspot.json"]


# -- a real full disk -------------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path):
    yield from mounted_tmpfs(tmp_path, "64k")


def fill_disk(directory):
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 1024)
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


@pytest.mark.root
def test_full_disk_keeps_the_old_file_and_a_consistent_store(tiny_disk):
    path = tiny_disk / "hotspot.json"
    store = Store(path)
    store.insert("resources", {"id": "kept", "tags": ["a"]})
    store.set_meta("v", 1)
    before = path.read_bytes()
    filler = fill_disk(tiny_disk)

    big = "x" * 20_000
    with pytest.raises(StoreError) as caught:
        store.insert("resources", {"id": "big", "text": big})
    assert caught.value.message == f"Could not save to {path}: No space left on device"
    with pytest.raises(StoreError, match="No space left"):
        store.update("resources", {"tags": ["changed", big]}, id="kept")
    with pytest.raises(StoreError, match="No space left"):
        with store.batch():
            store.set_meta("v", 2)
            store.replace_table("resources", [{"id": "new", "text": big}])

    assert path.read_bytes() == before
    assert sorted(os.listdir(tiny_disk)) == ["filler", "hotspot.json"]  # no temp file left
    assert store.all("resources") == [{"id": "kept", "tags": ["a"]}]
    assert store.get_meta("v") == 1

    filler.unlink()  # space again: the same store object works
    assert store.insert("resources", {"id": "after"}) == 2
    store.close()
    with Store(path) as reopened:
        assert [d["id"] for d in reopened.all("resources")] == ["kept", "after"]
        assert reopened.get_meta("v") == 1


# -- kill -9 ----------------------------------------------------------------------------------


class AckReader:
    """Reads ``ack <n>`` lines from a child's stdout with select, never sleeping blindly."""

    def __init__(self, proc):
        self.proc = proc
        self.fd = proc.stdout.fileno()
        self.buffer = b""
        self.acked = []
        self.eof = False

    def _read_some(self, timeout):
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return
        chunk = os.read(self.fd, 65536)
        if not chunk:
            self.eof = True
            return
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            word, number = line.decode().split()
            assert word == "ack"
            self.acked.append(int(number))

    def wait_for(self, count, timeout=10):
        deadline = time.monotonic() + timeout
        while len(self.acked) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.eof:
                raise AssertionError(f"writer acked {len(self.acked)} of {count} in time")
            self._read_some(remaining)

    def read_for(self, seconds):
        deadline = time.monotonic() + seconds
        while not self.eof and (remaining := deadline - time.monotonic()) > 0:
            self._read_some(remaining)

    def drain(self, timeout=10):
        # Acks already in the pipe were printed after their writes returned: they count too.
        deadline = time.monotonic() + timeout
        while not self.eof and time.monotonic() < deadline:
            self._read_some(deadline - time.monotonic())


def check_store_after_kill(path, acked):
    with Store(path) as store:  # parses, or this raises StoreCorrupt
        seqs = sorted(doc["seq"] for doc in store.all("records"))
        assert seqs == list(range(1, len(seqs) + 1)), "records are unique and without gaps"
        top = seqs[-1] if seqs else 0
        assert top >= max(acked, default=0)
        assert top <= max(acked, default=0) + 1  # at most the one round not yet acked
        assert set(acked) <= set(seqs)

        counter = store.get("counter", key="last")
        last_acked = max(acked, default=None)
        if last_acked is not None:
            assert last_acked <= counter["value"] <= top

        snapshot = store.all("snapshot")
        uptos = {doc["upto"] for doc in snapshot}
        assert len(snapshot) in (0, 3) and len(uptos) <= 1, snapshot
        fifths = [n for n in acked if n % 5 == 0]
        if fifths:
            assert uptos.pop() >= max(fifths)

        pairs = store.all("pairs")
        by_seq = {}
        for doc in pairs:
            by_seq.setdefault(doc["seq"], []).append(doc["half"])
        assert all(sorted(halves) == [1, 2] for halves in by_seq.values()), "a batch was split"
        assert {n for n in acked if n % 7 == 0} <= set(by_seq)
    assert not [name for name in os.listdir(path.parent) if ".tmp-" in name]
    return top


@pytest.mark.slow
def test_kill_9_never_loses_an_acked_write(tmp_path):
    path = tmp_path / "hotspot.json"
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    all_acked = []
    started = time.monotonic()
    for cycle in range(30):
        stderr_path = tmp_path / f"writer-{cycle}.err"
        with open(stderr_path, "wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, str(WRITER), str(path), "--ballast-kb", str(BALLAST_KB)],
                stdout=subprocess.PIPE, stderr=stderr
            )
        try:
            reader = AckReader(proc)
            try:
                reader.wait_for(rng.randint(1, 40))
            except AssertionError:
                proc.kill()
                proc.wait()
                raise AssertionError(f"seed {seed}, cycle {cycle}: {stderr_path.read_text()}")
            # Correctness does not depend on this pause: it only spreads the kill over a whole
            # round (a few ms), so it lands inside a write often, not always at the same step.
            reader.read_for(rng.uniform(0, 0.008))
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            reader.drain()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL
        all_acked += reader.acked
        top = check_store_after_kill(path, all_acked)
        assert reader.acked[0] <= top
    assert len(all_acked) >= 30
    assert time.monotonic() - started < 30
