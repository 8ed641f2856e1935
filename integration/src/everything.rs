//! `@modelcontextprotocol/server-everything` (npm, installed by `make setup`), the MCP
//! reference server, run as a child process on a kernel-chosen port.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::bail;

use crate::envoy::{loopback, tools_dir};
use crate::process::{free_port, Server};

pub struct Everything {
    pub addr: SocketAddr,
    _server: Server,
}

impl Everything {
    /// Starts `server-everything streamableHttp` (Node from `NODE`, else `node`) and waits
    /// until it listens.
    pub fn start() -> anyhow::Result<Everything> {
        let entry = tools_dir()
            .join("node/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
        if !entry.exists() {
            bail!("{} not found: run `make setup`", entry.display());
        }
        let port = free_port()?;
        let node = std::env::var_os("NODE").unwrap_or_else(|| "node".into());
        let server = Server::start(
            Command::new(node)
                .arg(&entry)
                .arg("streamableHttp")
                .env("PORT", port.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            loopback(port),
            "server-everything",
            Duration::from_secs(30),
        )?;
        Ok(Everything {
            addr: server.addr,
            _server: server,
        })
    }
}
