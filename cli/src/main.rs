//! `mcptrail`: collect, verify, and mint dev tokens.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mcptrail_cli::{approvals, collector, issuer, operations, query, records, replay, verify};

#[derive(Parser)]
#[command(name = "mcptrail", version, about = "mcptrail audit tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an HTTP audit collector that appends records to a file.
    Collect {
        #[arg(long, default_value = "127.0.0.1:9411")]
        listen: SocketAddr,
        #[arg(long)]
        out: PathBuf,
        /// Base64 HMAC key, to verify MACs as records arrive.
        #[arg(long, env = "MCPTRAIL_HMAC_KEY", hide_env_values = true)]
        hmac_key: Option<String>,
        /// Also print each record to stdout.
        #[arg(long)]
        echo: bool,
    },
    /// Verify the hash chains (and MACs) of collected NDJSON files, and report every stream
    /// that does not end with audit.closed as open.
    Verify {
        #[arg(long, env = "MCPTRAIL_HMAC_KEY", hide_env_values = true)]
        hmac_key: Option<String>,
        /// The checkpoint signing key's public half (base64, as `signing-key` writes it):
        /// checks every signed checkpoint, so records removed, changed, reordered or cut off
        /// before one are found without the HMAC key.
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
        /// Fail on open streams (trails of Envoys that have stopped: every stream must have
        /// been closed); with --public-key, also on a stream whose end is not signed.
        #[arg(long)]
        expect_closed: bool,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Make an Ed25519 checkpoint signing key: prints the seed (base64, for
    /// `audit.signing_key`) and writes the public key (base64) for `verify --public-key`.
    SigningKey {
        #[arg(long, value_name = "FILE")]
        public_out: PathBuf,
    },
    /// Filter collected records and print them as a table (or NDJSON with --json).
    ///
    /// Each criterion may be repeated (any value matches); all criteria must hold. Times:
    /// RFC 3339, a UTC date (2026-11-23, today, yesterday: as --until, the whole day counts),
    /// now, or a duration ago (90s, 15m, 24h, 7d, 2w). --since is inclusive, --until exclusive.
    Query {
        /// identity.sub or identity.email.
        #[arg(long = "user", value_name = "SUB")]
        users: Vec<String>,
        /// Tool name glob (* and ?), e.g. 'delete_*'.
        #[arg(long = "tool", value_name = "GLOB")]
        tools: Vec<String>,
        /// JSON-RPC method glob, e.g. 'resources/*'.
        #[arg(long = "method", value_name = "GLOB")]
        methods: Vec<String>,
        /// Record kind glob: command, session.start, '*.denied', ...
        #[arg(long = "kind", value_name = "KIND")]
        kinds: Vec<String>,
        /// Mcp-Session-Id.
        #[arg(long = "session", value_name = "ID")]
        sessions: Vec<String>,
        /// outcome.status: ok, error, denied, upstream_error, aborted, input_required, task.
        #[arg(long = "status", value_name = "S")]
        statuses: Vec<String>,
        /// An operation id (2026-07-28): every record of that operation, its legs joined
        /// across the files given (whichever VMs recorded them).
        #[arg(long = "operation", value_name = "ID")]
        operation_ids: Vec<String>,
        #[arg(long, value_name = "T")]
        since: Option<String>,
        #[arg(long, value_name = "T")]
        until: Option<String>,
        /// Print the matching lines exactly as stored (NDJSON) instead of a table.
        #[arg(long, conflicts_with = "session_totals")]
        json: bool,
        /// One row per session with its totals over every file given (commands, denials,
        /// errors, records, the Envoy VMs that wrote them, open or ended): what no single
        /// VM's session.end can know.
        #[arg(long = "sessions", conflicts_with = "operation_totals")]
        session_totals: bool,
        /// One row per operation of more than one record (the legs of a multi-round-trip
        /// request, a task and its calls), joined across the files given: who, what, each
        /// leg's outcome, the task's last status, the VMs that recorded it.
        #[arg(long = "operations", conflicts_with = "json")]
        operation_totals: bool,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print one session as a readable transcript: who, when, what, arguments (as recorded,
    /// masked), outcome and duration, in the order the calls started.
    Replay {
        #[arg(long, value_name = "ID")]
        session: String,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run the approval service for the policy action `review` (docs/approvals.md).
    Approvals {
        #[arg(long, default_value = "127.0.0.1:8787")]
        listen: SocketAddr,
        /// An SQLite file (created when missing), or a postgres:// URL shared by replicas.
        #[arg(long, env = "MCPTRAIL_APPROVALS_DB", hide_env_values = true)]
        db: String,
        /// The service's JSON configuration.
        #[arg(long)]
        config: PathBuf,
    },
    /// Serve a development JWKS (and OpenID configuration) for tokens minted by `token`.
    Issuer {
        #[arg(long, default_value = "127.0.0.1:9400")]
        listen: SocketAddr,
        /// RS256 private key (PEM); created when missing.
        #[arg(long)]
        key: PathBuf,
        /// The `iss` URL; defaults to http://LISTEN.
        #[arg(long)]
        issuer: Option<String>,
    },
    /// Mint a development token signed with the issuer's key (defaults fit `make run`).
    Token {
        #[arg(
            long,
            env = "MCPTRAIL_ISSUER_KEY",
            default_value = ".run/issuer-key.pem"
        )]
        key: PathBuf,
        #[arg(long, env = "MCPTRAIL_ISSUER", default_value = "http://127.0.0.1:9400")]
        issuer: String,
        #[arg(
            long,
            env = "MCPTRAIL_AUDIENCE",
            default_value = "http://127.0.0.1:10000/mcp"
        )]
        audience: String,
        #[arg(long)]
        sub: String,
        /// Comma-separated groups.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        client_id: Option<String>,
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mcptrail: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Collect {
            listen,
            out,
            hmac_key,
            echo,
        } => {
            let hmac_key = hmac_key.as_deref().map(verify::decode_key).transpose()?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async {
                let listener = tokio::net::TcpListener::bind(listen).await?;
                eprintln!(
                    "collector: listening on http://{} writing {}",
                    listener.local_addr()?,
                    out.display()
                );
                collector::serve(
                    listener,
                    collector::Options {
                        out,
                        hmac_key,
                        echo,
                    },
                )
                .await
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Approvals { listen, db, config } => {
            let text = std::fs::read_to_string(&config)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", config.display()))?;
            let config = approvals::Config::parse(&text)?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async {
                let listener = tokio::net::TcpListener::bind(listen).await?;
                approvals::run(listener, config, &db).await
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify {
            hmac_key,
            public_key,
            expect_closed,
            files,
        } => {
            let opts = verify::Options {
                key: hmac_key.as_deref().map(verify::decode_key).transpose()?,
                public_key: public_key
                    .as_deref()
                    .map(verify::read_public_key)
                    .transpose()?,
                expect_closed,
            };
            let report = verify::verify_with(opts, &files)?;
            Ok(if verify::print_report(&report) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::SigningKey { public_out } => {
            let (seed, public) = verify::new_signing_key();
            std::fs::write(&public_out, format!("{public}\n"))?;
            println!("{seed}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Query {
            users,
            tools,
            methods,
            kinds,
            sessions,
            statuses,
            since,
            until,
            operation_ids,
            json,
            session_totals,
            operation_totals,
            files,
        } => {
            let now = records::now_ms();
            let filter = query::Filter {
                users,
                tools,
                methods,
                kinds,
                sessions,
                statuses,
                since_ms: since
                    .as_deref()
                    .map(|s| records::parse_time(s, now, false))
                    .transpose()?,
                until_ms: until
                    .as_deref()
                    .map(|s| records::parse_time(s, now, true))
                    .transpose()?,
            };
            let (entries, skipped) = records::read_files(&files)?;
            for s in &skipped {
                eprintln!("mcptrail: skipped {s}");
            }
            let joined = operations::join(&entries);
            let wanted: Vec<&str> = operation_ids
                .iter()
                .map(|o| joined.get(o).map_or(o.as_str(), String::as_str))
                .collect();
            let rows: Vec<_> = query::select(&filter, &entries)
                .into_iter()
                .filter(|e| {
                    wanted.is_empty()
                        || operations::of(&joined, e).is_some_and(|o| wanted.contains(&o))
                })
                .collect();
            if json {
                print!("{}", query::ndjson(&rows));
            } else if session_totals {
                print!("{}", query::sessions_table(&query::session_totals(&rows)));
            } else if operation_totals {
                let totals = operations::totals(&rows, &joined);
                print!("{}", operations::table(&totals));
            } else {
                print!("{}", query::table(&rows, entries.len()));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay { session, files } => {
            let (entries, skipped) = records::read_files(&files)?;
            for s in &skipped {
                eprintln!("mcptrail: skipped {s}");
            }
            print!("{}", replay::transcript(&entries, &session)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Issuer {
            listen,
            key,
            issuer,
        } => {
            let kp = issuer::load_or_create_key(&key)?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async {
                let listener = tokio::net::TcpListener::bind(listen).await?;
                let addr = listener.local_addr()?;
                let iss = issuer.unwrap_or_else(|| format!("http://{addr}"));
                eprintln!("issuer: {iss} serving {iss}/.well-known/jwks.json");
                issuer::serve(listener, &kp, iss).await
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Token {
            key,
            issuer,
            audience,
            sub,
            groups,
            email,
            client_id,
            ttl,
        } => {
            let kp = issuer::load_or_create_key(&key)?;
            let token = issuer::mint(
                &kp,
                &issuer::TokenSpec {
                    issuer,
                    audience,
                    subject: sub,
                    groups,
                    email,
                    client_id,
                    ttl_s: ttl,
                },
            )?;
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
