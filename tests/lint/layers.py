"""The layers docs/design.md promises, checked on the source tree.

1. The outer ring (server, CLI, domains, examples) speaks only through the
   public header: a quoted #include names a public header (include/) or a
   header of its own folder (the CLI also sees the server's, and its
   main.c hands the built-in domains' table to cleave_main()).
2. The core, the sync layer and live queries include no backend header and name no
   backend: read stores and write stores are reached through their method
   tables, found in a registry (read/rstore.c, write/wstore.c).
3. A subsystem's private header (*_int.h) is included only by the files of
   that subsystem.
4. No C source file is over 1,000 lines.

Exit status 0 and "N passed, 0 failed" when every check holds; otherwise
each violation is printed and the status is 1.
"""
import os
import re
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)
BACKEND_HEADERS = ("sqlite3.h", "lmdb.h", "hiredis/", "libpq-fe.h",
                   "sqlite/sqlite_util.h", "read/rstore_int.h",
                   "read/rstore_lmdb_int.h", "read/rstore_redis.h",
                   "read/rstore_redis_int.h", "write/wstore_int.h")
BACKEND_NAMES = re.compile(r"\bcl_(rstore_(lmdb|sqlite|redis)|wstore_(pg|sqlite)"
                           r"|redis_\w+|pg_\w+|sqlite_\w+)\b")
MAX_LINES = 1000

# private header -> the folders (or files) allowed to include it
PRIVATE = {
    "sync/sync_int.h": ["src/sync/"],
    "write/writer_int.h": ["src/write/command.c", "src/write/handler.c",
                           "src/write/streams.c"],
    "write/wstore_int.h": ["src/write/wstore"],
    "read/rstore_int.h": ["src/read/", "tests/unit/"],
    "read/rstore_lmdb_int.h": ["src/read/rstore_lmdb"],
    "read/rstore_redis_int.h": ["src/read/rstore_redis"],
    "sqlite/sqlite_util.h": ["src/sqlite/", "src/write/wstore_sqlite.c",
                             "src/read/rstore_sqlite.c"],
    "sse_int.h": ["src/server/sse"],
}


def sources(*dirs):
    for d in dirs:
        base = os.path.join(ROOT, d)
        for dirpath, _, files in os.walk(base):
            for f in sorted(files):
                if f.endswith((".c", ".h")):
                    p = os.path.join(dirpath, f)
                    yield os.path.relpath(p, ROOT), p


def read(p):
    with open(p, encoding="utf-8", errors="replace") as f:
        return f.read()


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def main():
    failures = []
    checks = 0
    public = set(os.listdir(os.path.join(ROOT, "include")))

    # 1. the outer ring
    # the server and the CLI are one program; the CLI's main.c hands the
    # built-in domains (domains/domains.h) to cleave_main()
    ring = [("src/server", ["src/server"]),
            ("src/cli", ["src/cli", "src/server", "domains"]),
            ("domains", ["domains"]), ("src/testkit", ["src/testkit"]),
            ("examples", None)]
    for folder, own in ring:
        if not os.path.isdir(os.path.join(ROOT, folder)):
            continue
        for rel, p in sources(folder):
            mine = own or [os.path.dirname(rel)]
            for kind, name in INCLUDE.findall(read(p)):
                if kind != '"':
                    continue
                checks += 1
                if name in public:
                    continue
                if "/" not in name and any(
                        os.path.exists(os.path.join(ROOT, d, name))
                        for d in mine):
                    continue
                failures.append("%s: includes \"%s\" (the outer ring "
                                "sees only include/ and its own folder)"
                                % (rel, name))

    # 2. core and sync: no backend
    registries = {"src/read/rstore.c", "src/write/wstore.c"}
    for rel, p in sources("src/core", "src/sync", "src/live"):
        text = read(p)
        for _, name in INCLUDE.findall(text):
            checks += 1
            if name.startswith(BACKEND_HEADERS):
                failures.append("%s: includes backend header %s"
                                % (rel, name))
        if rel in registries:
            continue
        for m in BACKEND_NAMES.finditer(strip_comments(text)):
            failures.append("%s: names backend %s" % (rel, m.group(0)))
        checks += 1

    # 3. private headers
    for rel, p in sources("src", "domains", "tests", "fuzz", "bench"):
        for _, name in INCLUDE.findall(read(p)):
            if name not in PRIVATE:
                continue
            checks += 1
            if not any(rel.startswith(a) for a in PRIVATE[name]):
                failures.append("%s: includes %s, private to %s"
                                % (rel, name, ", ".join(PRIVATE[name])))

    # 4. file sizes
    for rel, p in sources("src", "domains"):
        if not rel.endswith(".c"):
            continue
        checks += 1
        n = read(p).count("\n")
        if n > MAX_LINES:
            failures.append("%s: %d lines (more than %d: split it along "
                            "its concerns)" % (rel, n, MAX_LINES))

    for f in failures:
        print("FAIL", f)
    print("%d passed, %d failed" % (checks - len(failures), len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
