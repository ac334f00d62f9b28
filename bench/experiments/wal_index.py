#!/usr/bin/env python3
"""Write amplification of the log's stream index, in isolation.

The engine's events table has UNIQUE(stream, version).  When one group
commit appends events to many different streams (here: Restock on 1,000
products), each event lands on a different leaf page of that index, and
SQLite's WAL writes every dirty page whole (4 KiB).  This script appends
batches of 1,000 events, as the writer does, to a copy of the events table
with and without that index, and prints the WAL bytes per appended event.
It uses /dev/shm: it measures bytes, not disk time.

    python3 bench/experiments/wal_index.py
"""
import os
import random
import sqlite3

def run(with_index, streams=1000, pre=200000, batch=1000, nb=20):
    path = "/dev/shm/walamp.db"
    for s in ["", "-wal", "-shm"]:
        try: os.remove(path + s)
        except FileNotFoundError: pass
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL"); db.execute("PRAGMA wal_autocheckpoint=0")
    db.execute("CREATE TABLE events(position INTEGER PRIMARY KEY, stream TEXT NOT NULL, version INTEGER NOT NULL, type TEXT NOT NULL, schema_version INTEGER NOT NULL, data TEXT NOT NULL, ts_us INTEGER NOT NULL, trace_id TEXT, command_id TEXT, idem_key TEXT, causation_id TEXT)")
    if with_index:
        db.execute("CREATE UNIQUE INDEX events_stream ON events(stream, version)")
    ver = [0]*streams
    data = '{"productId":"p123","quantity":1,"stock":500000123}'
    def ins(n):
        for _ in range(n):
            s = random.randrange(streams); ver[s] += 1
            db.execute("INSERT INTO events VALUES(NULL,?,?,'ProductRestocked',1,?,0,'0123456789abcdef0123456789abcdef','0123456789abcdef0123456789abcdef',NULL,NULL)", ("product-p%d" % s, ver[s], data))
    db.execute("BEGIN"); ins(pre); db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    w0 = os.path.getsize(path + "-wal")
    for _ in range(nb):
        db.execute("BEGIN"); ins(batch); db.execute("COMMIT")
    w1 = os.path.getsize(path + "-wal")
    return (w1 - w0) / (nb * batch)
random.seed(1)
for idx in (True, False):
    print("index(stream,version)=%s: %.0f WAL bytes per appended event (batches of 1000, 1000 streams, 200k events before)" % (idx, run(idx)))
