//! Servers the tests run as child processes on a kernel-chosen loopback port: started,
//! waited for until they listen, stopped (killed and reaped) on drop.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::envoy::loopback;

/// A free loopback port (the kernel's choice; free when asked).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind(loopback(0))?.local_addr()?.port())
}

/// A running server process.
pub struct Server {
    pub addr: SocketAddr,
    child: Child,
}

impl Server {
    /// Spawns `cmd` and waits up to `within` until `addr` accepts connections; fails (and
    /// stops the child) if it exits or does not listen in time. `what` names it in errors.
    pub fn start(
        cmd: &mut Command,
        addr: SocketAddr,
        what: &str,
        within: Duration,
    ) -> anyhow::Result<Server> {
        let child = cmd.spawn().with_context(|| format!("starting {what}"))?;
        let mut server = Server { addr, child };
        let deadline = Instant::now() + within;
        while TcpStream::connect(addr).is_err() {
            if let Some(status) = server.child.try_wait()? {
                bail!("{what} exited at start: {status}");
            }
            if Instant::now() > deadline {
                bail!("{what} did not listen on {addr} within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a client program to its end (from a multi-threaded runtime); its stdout. Fails the
/// test with the client's stdout and stderr when it fails.
pub fn client_stdout(cmd: &mut Command) -> String {
    let out = tokio::task::block_in_place(|| cmd.output())
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "client failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
