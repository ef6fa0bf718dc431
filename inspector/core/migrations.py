"""Numbered schema migrations of the project file.

``PRAGMA user_version`` holds the number of the last migration applied. A migration is never
edited once released: a change to the schema is a new entry at the end of ``MIGRATIONS``.
"""

from __future__ import annotations

import sqlite3

#: Identifies an Inspector project among SQLite files ("INSP" in ASCII).
APPLICATION_ID = 0x494E5350

MIGRATION_1 = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE images (
    id           INTEGER PRIMARY KEY,
    path         TEXT NOT NULL UNIQUE,   -- relative to the image root, POSIX separators
    content_hash TEXT,
    size         INTEGER NOT NULL,
    mtime_ns     INTEGER NOT NULL,
    width        INTEGER,
    height       INTEGER,
    bit_depth    INTEGER,
    channels     INTEGER,
    error        TEXT,                   -- why the file cannot be used; NULL when it can
    note         TEXT,                   -- e.g. 'first of 3 pages'
    missing      INTEGER NOT NULL DEFAULT 0,  -- gone from the folder at the last scan
    added_at     TEXT NOT NULL
);
CREATE INDEX images_hash ON images(content_hash);
CREATE TABLE classes (
    id        INTEGER PRIMARY KEY,
    name      TEXT NOT NULL UNIQUE,
    color     TEXT NOT NULL,
    position  INTEGER NOT NULL,
    removed   INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE label_events (
    id         INTEGER PRIMARY KEY,
    image_id   INTEGER NOT NULL REFERENCES images(id),
    class_id   INTEGER REFERENCES classes(id),
    kind       TEXT NOT NULL CHECK (kind IN ('class', 'unsure', 'skip', 'cleared')),
    annotator  TEXT NOT NULL DEFAULT '',
    source     TEXT NOT NULL CHECK (source IN ('human', 'imported', 'suggestion', 'bulk', 'merge')),
    audit      INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
CREATE INDEX label_events_image ON label_events(image_id, id);
CREATE TABLE features (
    image_id          INTEGER NOT NULL REFERENCES images(id),
    extractor         TEXT NOT NULL,
    extractor_version INTEGER NOT NULL,
    content_hash      TEXT,
    vector            BLOB NOT NULL,
    PRIMARY KEY (extractor, extractor_version, image_id)
) WITHOUT ROWID;
CREATE TABLE model_versions (
    version    INTEGER PRIMARY KEY,
    kind       TEXT NOT NULL,
    settings   TEXT NOT NULL,
    n_labels   INTEGER NOT NULL,
    metrics    TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE queue (
    image_id      INTEGER PRIMARY KEY REFERENCES images(id),
    position      INTEGER NOT NULL,
    strategy      TEXT NOT NULL,
    score         REAL,
    reason        TEXT NOT NULL,
    model_version INTEGER,
    audit         INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

#: What the accuracy estimators need about each pick (issue 14): the probability with which it
#: was drawn and how many images were still unlabelled then (NULL for picks that were not
#: sampled: top-k, cold start, and every pick made before this migration), carried onto the
#: label event that answers the pick together with the model version that queued it.
MIGRATION_2 = """
ALTER TABLE queue ADD COLUMN selection_probability REAL;
ALTER TABLE queue ADD COLUMN pool_size INTEGER;
ALTER TABLE label_events ADD COLUMN selection_probability REAL;
ALTER TABLE label_events ADD COLUMN pool_size INTEGER;
ALTER TABLE label_events ADD COLUMN model_version INTEGER;
"""

MIGRATIONS: list[str] = [MIGRATION_1, MIGRATION_2]

SCHEMA_VERSION = len(MIGRATIONS)


def apply_migrations(connection: sqlite3.Connection, current: int) -> int:
    """Apply every migration after ``current`` inside one transaction; return the new version."""
    if current >= SCHEMA_VERSION:
        return current
    connection.execute("BEGIN IMMEDIATE")
    try:
        for number in range(current + 1, SCHEMA_VERSION + 1):
            for statement in _statements(MIGRATIONS[number - 1]):
                connection.execute(statement)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    return SCHEMA_VERSION


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (executescript would commit implicitly)."""
    statements, current = [], []
    for line in script.splitlines():
        current.append(line)
        candidate = "\n".join(current)
        if sqlite3.complete_statement(candidate):
            statements.append(candidate.strip())
            current = []
    return [s for s in statements if s]
