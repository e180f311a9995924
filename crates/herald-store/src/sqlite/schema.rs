//! Tables, indexes and connection settings of the embedded store.

use rusqlite::Connection;

/// Each entry upgrades the schema by one version (`PRAGMA user_version`).
/// Never edit a shipped entry: append a new one.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the event log and id rules.
    "CREATE TABLE events (
        position     INTEGER PRIMARY KEY,  -- assigned by the writer, gap-free
        id           TEXT NOT NULL UNIQUE, -- the permanent dedup index
        content_hash BLOB NOT NULL,        -- sha256 of canonical (source, detail-type, version, detail)
        source       TEXT NOT NULL,
        detail_type  TEXT NOT NULL,
        stream       TEXT,
        time_us      INTEGER NOT NULL,
        body         TEXT NOT NULL         -- the envelope JSON, without position
    );
    -- No index on source or detail_type: each costs ~20% of the append rate,
    -- and filtered reads scan forward by position a bounded span instead.
    CREATE INDEX events_by_stream ON events (stream, position) WHERE stream IS NOT NULL;
    CREATE TABLE id_rules (
        detail_type TEXT PRIMARY KEY,
        fields      TEXT NOT NULL          -- JSON array of JSON pointers
    );",
    // 2: subscriptions, the deliveries they owe, attempts and dead letters.
    "CREATE TABLE subscriptions (
        name        TEXT PRIMARY KEY,
        spec        TEXT NOT NULL,         -- the declaration, JSON, defaults filled in
        state       TEXT NOT NULL,         -- active | paused | disabled
        cursor      INTEGER NOT NULL,      -- events up to here are fanned out
        created_us  INTEGER NOT NULL,
        updated_us  INTEGER NOT NULL,
        delivered   INTEGER NOT NULL DEFAULT 0,
        failed      INTEGER NOT NULL DEFAULT 0,
        last_error  TEXT
    );
    CREATE TABLE deliveries (
        subscription TEXT NOT NULL,
        position     INTEGER NOT NULL,
        event_id     TEXT NOT NULL,
        stream       TEXT,
        attempts     INTEGER NOT NULL,     -- made so far
        due_us       INTEGER NOT NULL,     -- next attempt not before
        first_due_us INTEGER NOT NULL,     -- max_age counts from here
        replay       INTEGER NOT NULL,
        lease        TEXT,                 -- pull: the lease that holds it until due_us
        PRIMARY KEY (subscription, position)
    ) WITHOUT ROWID;
    CREATE INDEX deliveries_by_due ON deliveries (subscription, due_us, position);
    CREATE INDEX deliveries_by_stream ON deliveries (subscription, stream, position) WHERE stream IS NOT NULL;
    CREATE TABLE attempts (
        seq          INTEGER PRIMARY KEY,
        subscription TEXT NOT NULL,
        event_id     TEXT NOT NULL,
        position     INTEGER NOT NULL,
        attempt      INTEGER NOT NULL,
        time_us      INTEGER NOT NULL,
        outcome      TEXT NOT NULL,        -- delivered | failed | dead | gone
        status       INTEGER,
        latency_us   INTEGER NOT NULL,
        error        TEXT,
        response     TEXT,
        replay       INTEGER NOT NULL
    );
    CREATE INDEX attempts_by_subscription ON attempts (subscription, seq);
    CREATE TABLE dead_letters (
        subscription TEXT NOT NULL,
        position     INTEGER NOT NULL,
        event_id     TEXT NOT NULL,
        stream       TEXT,
        attempts     INTEGER NOT NULL,
        reason       TEXT NOT NULL,
        time_us      INTEGER NOT NULL,
        PRIMARY KEY (subscription, position)
    ) WITHOUT ROWID;
    CREATE INDEX dead_letters_by_event ON dead_letters (subscription, event_id);",
    // 3: the running maximum of event time, every ~1,000 positions (see
    // sqlite/time_marks.rs). The base row: no marks cover positions up to it.
    "CREATE TABLE time_marks (
        position    INTEGER PRIMARY KEY,
        max_time_us INTEGER NOT NULL       -- max(time_us) of events after the base, up to position
    );
    CREATE INDEX time_marks_by_time ON time_marks (max_time_us);
    INSERT INTO time_marks SELECT coalesce(max(position), 0), -9223372036854775807 - 1 FROM events;",
    // 4: a CRC-32 of each event's body, checked on every read (NULL for
    // events stored before it; see sqlite/reader.rs).
    "ALTER TABLE events ADD COLUMN body_crc INTEGER;",
];

/// Settings of the one write connection. `synchronous = FULL` makes every
/// commit fsync the WAL: a 2xx is only sent after that. `page_size` takes
/// effect only on a new, empty file (a file in WAL mode keeps its size).
pub fn configure_writer(conn: &Connection, page_size: u32) -> rusqlite::Result<()> {
    conn.pragma_update(None, "page_size", page_size)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // The writer walks the id index on every append: give it 64 MiB of page
    // cache (negative = KiB).
    configure_common(conn, -65536)
}

/// The checkpoint connection: `synchronous = FULL` makes each checkpoint
/// fsync the database file before the WAL may be reused. It reads frames
/// straight from the WAL, so it needs little cache.
pub fn configure_checkpointer(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "synchronous", "FULL")?;
    configure_common(conn, -1024)
}

pub fn configure_reader(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "query_only", true)?;
    // Readers mostly read recent pages, which the OS caches anyway; several
    // of them at 64 MiB each would multiply the memory for little gain.
    configure_common(conn, -8192)
}

fn configure_common(conn: &Connection, cache_kib: i64) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "cache_size", cache_kib)?;
    conn.pragma_update(None, "temp_store", "MEMORY")
}

/// A database that has tables but no Herald schema version: some other
/// program's file, which migrating would write Herald's tables into.
pub fn is_foreign(conn: &Connection) -> rusqlite::Result<bool> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_schema WHERE type = 'table'", [], |r| r.get(0))?;
    Ok(version == 0 && tables > 0)
}

pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let current: usize = conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))? as usize;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
