//! The approval service's database: SQLite (a file, the default) or PostgreSQL (shared by
//! replicas), through one `sqlx::AnyPool` and SQL both understand (`$N` parameters work in
//! both). Every change that must happen once across replicas is a conditional UPDATE (or an
//! INSERT guarded by a unique index) whose affected-row count says who won: never a read
//! followed by a blind write.

use anyhow::Context as _;
use serde_json::Value;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row as _};

use super::grants::{Grant, Mode, Status};

/// Schema versions, applied in order once each (`schema_version` remembers the last).
const MIGRATIONS: &[&[&str]] = &[&[
    "CREATE TABLE IF NOT EXISTS requests (
        id TEXT PRIMARY KEY,
        iss TEXT NOT NULL,
        sub TEXT NOT NULL,
        tool TEXT NOT NULL,
        method TEXT NOT NULL,
        arguments_sha256 TEXT NOT NULL,
        subject TEXT NOT NULL,
        arguments TEXT NOT NULL,
        session TEXT,
        request_id TEXT,
        status TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        decided_at BIGINT,
        decided_by TEXT,
        approver TEXT,
        mode TEXT,
        window_s BIGINT,
        note TEXT,
        consumed_at BIGINT,
        uses BIGINT NOT NULL DEFAULT 0
    )",
    "CREATE INDEX IF NOT EXISTS requests_caller ON requests (iss, sub, tool, created_at)",
    "CREATE INDEX IF NOT EXISTS requests_status ON requests (status, created_at)",
    // At most one pending request per call, whichever replica creates it.
    "CREATE UNIQUE INDEX IF NOT EXISTS requests_one_pending
        ON requests (iss, sub, tool, arguments_sha256) WHERE status = 'pending'",
    "CREATE TABLE IF NOT EXISTS sessions (
        id_sha256 TEXT PRIMARY KEY,
        identity TEXT NOT NULL,
        expires_at BIGINT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS logins (
        state TEXT PRIMARY KEY,
        verifier TEXT NOT NULL,
        nonce TEXT NOT NULL,
        return_to TEXT NOT NULL,
        created_at BIGINT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS audit_streams (
        stream TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        heartbeat_at BIGINT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS audit_outbox (
        stream TEXT NOT NULL,
        seq BIGINT NOT NULL,
        line TEXT NOT NULL,
        shipped_at BIGINT,
        PRIMARY KEY (stream, seq)
    )",
]];

/// The database.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    postgres: bool,
}

/// One stored request, as the API shows it.
#[derive(Debug, Clone)]
pub struct Request {
    pub grant: Grant,
    pub method: String,
    pub subject: Value,
    pub arguments: Value,
    pub session: Option<String>,
    pub request_id: Option<String>,
    pub approver: Option<Value>,
    pub uses: i64,
}

/// A new pending request.
#[derive(Debug, Clone)]
pub struct NewRequest<'a> {
    pub id: &'a str,
    pub iss: &'a str,
    pub sub: &'a str,
    pub tool: &'a str,
    pub method: &'a str,
    pub arguments_sha256: &'a str,
    pub subject: &'a Value,
    pub arguments: &'a Value,
    pub session: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub now: i64,
}

/// An approver's decision as stored.
#[derive(Debug, Clone)]
pub struct Decided<'a> {
    pub id: &'a str,
    pub status: Status,
    pub now: i64,
    pub decided_by: &'a str,
    pub approver: &'a Value,
    pub mode: Option<Mode>,
    pub window_s: Option<i64>,
    pub note: Option<&'a str>,
    /// Requests created at or before this are expired and cannot be decided.
    pub expired_before: i64,
    /// The approver, who must not be the requester.
    pub approver_iss: &'a str,
    pub approver_sub: &'a str,
}

/// A login in progress (OIDC state → PKCE verifier, nonce, where to go back).
#[derive(Debug, Clone)]
pub struct Login {
    pub verifier: String,
    pub nonce: String,
    pub return_to: String,
    pub created_at: i64,
}

pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

const REQUEST_COLUMNS: &str = "id, iss, sub, tool, method, arguments_sha256, subject, arguments, \
    session, request_id, status, created_at, decided_at, decided_by, approver, mode, window_s, \
    note, consumed_at, uses";

fn json_col(row: &AnyRow, name: &str) -> anyhow::Result<Value> {
    let s: String = row.try_get(name)?;
    serde_json::from_str(&s).with_context(|| format!("stored column {name} is not JSON"))
}

fn request_of(row: &AnyRow) -> anyhow::Result<Request> {
    let status: String = row.try_get("status")?;
    let mode: Option<String> = row.try_get("mode")?;
    let approver: Option<String> = row.try_get("approver")?;
    Ok(Request {
        grant: Grant {
            id: row.try_get("id")?,
            iss: row.try_get("iss")?,
            sub: row.try_get("sub")?,
            tool: row.try_get("tool")?,
            arguments_sha256: row.try_get("arguments_sha256")?,
            status: Status::parse(&status)
                .with_context(|| format!("stored status {status:?} is unknown"))?,
            created_at: row.try_get("created_at")?,
            decided_at: row.try_get("decided_at")?,
            decided_by: row.try_get("decided_by")?,
            mode: mode.as_deref().and_then(Mode::parse),
            window_s: row.try_get("window_s")?,
            consumed_at: row.try_get("consumed_at")?,
            note: row.try_get("note")?,
        },
        method: row.try_get("method")?,
        subject: json_col(row, "subject")?,
        arguments: json_col(row, "arguments")?,
        session: row.try_get("session")?,
        request_id: row.try_get("request_id")?,
        approver: approver
            .map(|a| serde_json::from_str(&a))
            .transpose()
            .context("stored approver is not JSON")?,
        uses: row.try_get("uses")?,
    })
}

impl Store {
    /// Opens (creating an SQLite file when missing) and migrates the database. `db` is a
    /// `postgres://`/`postgresql://` URL, an `sqlite:` URL, or a file path.
    pub async fn open(db: &str) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let postgres = db.starts_with("postgres://") || db.starts_with("postgresql://");
        let (url, max) = if postgres {
            (db.to_string(), 10)
        } else if db.starts_with("sqlite:") {
            (db.to_string(), 1)
        } else {
            // One connection: SQLite serialises writers anyway, and one connection never
            // waits on a lock held by another of ours.
            (format!("sqlite://{db}?mode=rwc"), 1)
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .connect(&url)
            .await
            .with_context(|| format!("cannot open database {}", redact(db)))?;
        if !postgres {
            // Write-ahead log: a commit is one fsync of the log instead of the rollback
            // journal's several, still durable (synchronous stays FULL). Kept in the file.
            sqlx::query("PRAGMA journal_mode=WAL")
                .execute(&pool)
                .await?;
        }
        let store = Store { pool, postgres };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> anyhow::Result<()> {
        let mut conn = self.pool.acquire().await?;
        // Replicas starting together: one migrates, the others wait for it.
        if self.postgres {
            sqlx::query("SELECT pg_advisory_lock(7277001)")
                .execute(&mut *conn)
                .await?;
        }
        let result = async {
            sqlx::query("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
                .execute(&mut *conn)
                .await?;
            let current: Option<i64> = sqlx::query("SELECT MAX(version) AS v FROM schema_version")
                .fetch_one(&mut *conn)
                .await?
                .try_get("v")?;
            let current = current.unwrap_or(0);
            for (i, statements) in MIGRATIONS.iter().enumerate() {
                let version = i64::try_from(i + 1)?;
                if version <= current {
                    continue;
                }
                for s in *statements {
                    sqlx::query(s)
                        .execute(&mut *conn)
                        .await
                        .with_context(|| format!("migration {version}"))?;
                }
                sqlx::query("INSERT INTO schema_version (version) VALUES ($1)")
                    .bind(version)
                    .execute(&mut *conn)
                    .await?;
            }
            anyhow::Ok(())
        }
        .await;
        if self.postgres {
            sqlx::query("SELECT pg_advisory_unlock(7277001)")
                .execute(&mut *conn)
                .await?;
        }
        result
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn begin(&self) -> anyhow::Result<Tx> {
        Ok(self.pool.begin().await?)
    }

    /// The requests of a caller for a tool created since `since`.
    pub async fn grants_for(
        &self,
        iss: &str,
        sub: &str,
        tool: &str,
        since: i64,
    ) -> anyhow::Result<Vec<Grant>> {
        let rows = sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS} FROM requests
             WHERE iss = $1 AND sub = $2 AND tool = $3 AND created_at > $4"
        ))
        .bind(iss)
        .bind(sub)
        .bind(tool)
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| request_of(r).map(|r| r.grant))
            .collect()
    }

    /// Spends a `once` approval. False when another check (on any replica) spent it first.
    pub async fn consume_once(&self, id: &str, now: i64) -> anyhow::Result<bool> {
        let done = sqlx::query(
            "UPDATE requests SET consumed_at = $1, uses = uses + 1
             WHERE id = $2 AND status = 'approved' AND mode = 'once' AND consumed_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks the pending requests of this call created at or before `cutoff` expired, so a
    /// new one may take their place under the one-pending index.
    pub async fn expire_pending(
        &self,
        iss: &str,
        sub: &str,
        tool: &str,
        arguments_sha256: &str,
        cutoff: i64,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE requests SET status = 'expired'
             WHERE iss = $1 AND sub = $2 AND tool = $3 AND arguments_sha256 = $4
               AND status = 'pending' AND created_at <= $5",
        )
        .bind(iss)
        .bind(sub)
        .bind(tool)
        .bind(arguments_sha256)
        .bind(cutoff)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Inserts a pending request. False when a pending one for the same call exists already
    /// (another check, perhaps on another replica, made it first).
    pub async fn insert_pending(&self, r: &NewRequest<'_>) -> anyhow::Result<bool> {
        let result = sqlx::query(
            "INSERT INTO requests (id, iss, sub, tool, method, arguments_sha256, subject,
                arguments, session, request_id, status, created_at, uses)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending', $11, 0)",
        )
        .bind(r.id)
        .bind(r.iss)
        .bind(r.sub)
        .bind(r.tool)
        .bind(r.method)
        .bind(r.arguments_sha256)
        .bind(r.subject.to_string())
        .bind(r.arguments.to_string())
        .bind(r.session)
        .bind(r.request_id)
        .bind(r.now)
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn get(&self, id: &str) -> anyhow::Result<Option<Request>> {
        let row = sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS} FROM requests WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(request_of).transpose()
    }

    /// Requests with `status` (all when `None`), newest first.
    pub async fn list(&self, status: Option<Status>, limit: i64) -> anyhow::Result<Vec<Request>> {
        let rows = match status {
            Some(s) => {
                sqlx::query(&format!(
                    "SELECT {REQUEST_COLUMNS} FROM requests WHERE status = $1
                     ORDER BY created_at DESC, id DESC LIMIT $2"
                ))
                .bind(s.as_str())
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                "SELECT {REQUEST_COLUMNS} FROM requests ORDER BY created_at DESC, id DESC LIMIT $1"
            ))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(request_of).collect()
    }

    /// Records a decision in `tx` if the request is still pending, unexpired and not the
    /// approver's own. False when it was not (decided meanwhile, by anyone, anywhere).
    pub async fn decide(tx: &mut Tx, d: &Decided<'_>) -> anyhow::Result<bool> {
        let done = sqlx::query(
            "UPDATE requests SET status = $1, decided_at = $2, decided_by = $3, approver = $4,
                mode = $5, window_s = $6, note = $7
             WHERE id = $8 AND status = 'pending' AND created_at > $9
               AND NOT (iss = $10 AND sub = $11)",
        )
        .bind(d.status.as_str())
        .bind(d.now)
        .bind(d.decided_by)
        .bind(d.approver.to_string())
        .bind(d.mode.map(Mode::as_str))
        .bind(d.window_s)
        .bind(d.note)
        .bind(d.id)
        .bind(d.expired_before)
        .bind(d.approver_iss)
        .bind(d.approver_sub)
        .execute(&mut **tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Appends a sealed audit line to the outbox in `tx`.
    pub async fn outbox_put(tx: &mut Tx, stream: &str, seq: u64, line: &str) -> anyhow::Result<()> {
        sqlx::query("INSERT INTO audit_outbox (stream, seq, line) VALUES ($1, $2, $3)")
            .bind(stream)
            .bind(i64::try_from(seq)?)
            .bind(line)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Registers this process's stream, shipped by this process (`owner`).
    pub async fn stream_register(&self, stream: &str, now: i64) -> anyhow::Result<()> {
        sqlx::query("INSERT INTO audit_streams (stream, owner, heartbeat_at) VALUES ($1, $1, $2)")
            .bind(stream)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Keeps `owner`'s streams claimed, and claims the streams of shippers silent since
    /// `stale_before` (a process that stopped with records unshipped). Atomic per stream: one
    /// shipper ships a stream at a time, so its records reach the collector in order.
    pub async fn streams_heartbeat(
        &self,
        owner: &str,
        now: i64,
        stale_before: i64,
    ) -> anyhow::Result<()> {
        sqlx::query("UPDATE audit_streams SET heartbeat_at = $1 WHERE owner = $2")
            .bind(now)
            .bind(owner)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "UPDATE audit_streams SET owner = $1, heartbeat_at = $2
             WHERE heartbeat_at < $3 AND owner <> $1
               AND EXISTS (SELECT 1 FROM audit_outbox o
                           WHERE o.stream = audit_streams.stream AND o.shipped_at IS NULL)",
        )
        .bind(owner)
        .bind(now)
        .bind(stale_before)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Unshipped lines of the streams `owner` ships, in order.
    pub async fn outbox_due(
        &self,
        owner: &str,
        limit: i64,
    ) -> anyhow::Result<Vec<(String, i64, String)>> {
        let rows = sqlx::query(
            "SELECT o.stream, o.seq, o.line FROM audit_outbox o
             JOIN audit_streams s ON s.stream = o.stream
             WHERE s.owner = $1 AND o.shipped_at IS NULL
             ORDER BY o.stream, o.seq LIMIT $2",
        )
        .bind(owner)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("stream")?, r.try_get("seq")?, r.try_get("line")?)))
            .collect()
    }

    /// Marks the lines of `stream` up to `seq` shipped.
    pub async fn outbox_shipped(&self, stream: &str, seq: i64, now: i64) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE audit_outbox SET shipped_at = $1
             WHERE stream = $2 AND seq <= $3 AND shipped_at IS NULL",
        )
        .bind(now)
        .bind(stream)
        .bind(seq)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn outbox_unshipped_count(&self) -> anyhow::Result<i64> {
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM audit_outbox WHERE shipped_at IS NULL")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        Ok(n)
    }

    pub async fn session_put(
        &self,
        id_sha256: &str,
        identity: &Value,
        expires_at: i64,
    ) -> anyhow::Result<()> {
        sqlx::query("INSERT INTO sessions (id_sha256, identity, expires_at) VALUES ($1, $2, $3)")
            .bind(id_sha256)
            .bind(identity.to_string())
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The identity of a live session.
    pub async fn session_get(&self, id_sha256: &str, now: i64) -> anyhow::Result<Option<Value>> {
        let row =
            sqlx::query("SELECT identity FROM sessions WHERE id_sha256 = $1 AND expires_at > $2")
                .bind(id_sha256)
                .bind(now)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(|r| json_col(r, "identity")).transpose()
    }

    pub async fn session_delete(&self, id_sha256: &str, now: i64) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id_sha256 = $1 OR expires_at <= $2")
            .bind(id_sha256)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn login_put(&self, state: &str, l: &Login) -> anyhow::Result<()> {
        // Abandoned logins go after ten minutes.
        sqlx::query("DELETE FROM logins WHERE created_at < $1")
            .bind(l.created_at - 600)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO logins (state, verifier, nonce, return_to, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(state)
        .bind(&l.verifier)
        .bind(&l.nonce)
        .bind(&l.return_to)
        .bind(l.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Takes a login by its state: a state is used once, whichever replica gets the callback.
    pub async fn login_take(&self, state: &str) -> anyhow::Result<Option<Login>> {
        let row = sqlx::query(
            "DELETE FROM logins WHERE state = $1 RETURNING verifier, nonce, return_to, created_at",
        )
        .bind(state)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(Login {
                verifier: r.try_get("verifier")?,
                nonce: r.try_get("nonce")?,
                return_to: r.try_get("return_to")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .transpose()
    }
}

/// A database URL without its password, for messages.
pub fn redact(db: &str) -> String {
    match (db.find("://"), db.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &db[..s], &db[at + 1..]),
        _ => db.to_string(),
    }
}
