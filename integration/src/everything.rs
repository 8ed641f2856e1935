//! `@modelcontextprotocol/server-everything` (npm, installed by `make setup`), the MCP
//! reference server, run as a child process on a kernel-chosen port.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::envoy::tools_dir;

pub struct Everything {
    pub addr: SocketAddr,
    child: Child,
}

impl Everything {
    /// Starts `server-everything streamableHttp` and waits until it listens.
    pub fn start() -> anyhow::Result<Everything> {
        let entry = tools_dir()
            .join("node/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
        if !entry.exists() {
            bail!("{} not found: run `make setup`", entry.display());
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut child = Command::new("node")
            .arg(&entry)
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting node")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(addr).is_err() {
            if let Some(status) = child.try_wait()? {
                bail!("server-everything exited: {status}");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("server-everything did not listen on {addr}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Everything { addr, child })
    }
}

impl Drop for Everything {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
