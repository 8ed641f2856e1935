//! `integration/py/policy_server.py`: an MCP server on the official Python SDK that logs every
//! body it received whole and every tool it ran, so a test can show what reached it.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::Value;

use crate::envoy::{loopback, repo_root, tools_dir};
use crate::process::{free_port, Server};

pub struct PyServer {
    pub server: Server,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl PyServer {
    /// On a free port; `stateful` keeps sessions (`Mcp-Session-Id`), else every request
    /// stands alone.
    pub fn start(stateful: bool) -> PyServer {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.ndjson");
        std::fs::File::create(&log).unwrap();
        let port = free_port().unwrap();
        let mut cmd = Command::new(tools_dir().join("venv/bin/python"));
        cmd.arg(repo_root().join("integration/py/policy_server.py"))
            .args(["--port", &port.to_string(), "--log"])
            .arg(&log)
            .stdout(Stdio::null())
            // Its tracebacks for the refused requests' resets (ClientDisconnect) stay here.
            .stderr(std::fs::File::create(dir.path().join("server.err")).unwrap());
        if stateful {
            cmd.arg("--stateful");
        }
        let server = Server::start(
            &mut cmd,
            loopback(port),
            "the Python policy server (make setup)",
            Duration::from_secs(30),
        )
        .unwrap();
        PyServer {
            server,
            log,
            _dir: dir,
        }
    }

    pub fn entries(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The bodies the server received whole.
    pub fn bodies(&self) -> Vec<Vec<u8>> {
        self.entries()
            .iter()
            .filter_map(|e| e["body"].as_str())
            .map(|b| base64::engine::general_purpose::STANDARD.decode(b).unwrap())
            .collect()
    }

    /// How many times `tool` ran.
    pub fn ran(&self, tool: &str) -> usize {
        self.entries().iter().filter(|e| e["ran"] == tool).count()
    }
}

/// `integration/py/fixture_server.py` on the official Python SDK, stateless with JSON answers
/// (it speaks the 2026-07-28 generation too), on a free port.
pub fn fixture_server() -> Server {
    let port = free_port().unwrap();
    Server::start(
        Command::new(tools_dir().join("venv/bin/python"))
            .arg(repo_root().join("integration/py/fixture_server.py"))
            .args(["--port", &port.to_string(), "--json", "--stateless"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        loopback(port),
        "the Python fixture server (make setup)",
        Duration::from_secs(30),
    )
    .unwrap()
}
