//! `mcptrail`: collect, verify, and mint dev tokens.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mcptrail_cli::{collector, issuer, verify};

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
    /// Verify the hash chains (and MACs) of collected NDJSON files.
    Verify {
        #[arg(long, env = "MCPTRAIL_HMAC_KEY", hide_env_values = true)]
        hmac_key: Option<String>,
        #[arg(required = true)]
        files: Vec<PathBuf>,
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
        Command::Verify { hmac_key, files } => {
            let key = hmac_key.as_deref().map(verify::decode_key).transpose()?;
            let report = verify::verify_files(key, &files)?;
            Ok(if verify::print_report(&report) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
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
