"""Makes a SQLite database (a test's SQL catalog) unavailable for a while: takes an
exclusive lock (BEGIN EXCLUSIVE), holds it, and lets go (ROLLBACK). Writers, and in
rollback-journal mode readers too, get "database is locked" or wait meanwhile.

usage: hold_lock.py --db PATH --seconds S
stdout: "locked" once the lock is held, "released" once it is let go.
"""
import argparse
import sqlite3
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--db", required=True)
    p.add_argument("--seconds", type=float, required=True)
    a = p.parse_args()
    conn = sqlite3.connect(a.db, timeout=30, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    print("locked", flush=True)
    time.sleep(a.seconds)
    conn.execute("ROLLBACK")
    conn.close()
    print("released", flush=True)


if __name__ == "__main__":
    main()
