//! The demo MCP server on its own: `demo-mcp-server [--listen ADDR] [--json] [--stateless]`.

use mcptrail_integration::demo::{self, Mode};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut listen = "127.0.0.1:8081".to_string();
    let mut mode = Mode::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().unwrap_or(listen),
            "--json" => mode.json = true,
            "--stateless" => mode.stateless = true,
            other => anyhow::bail!("unknown argument {other}; usage: demo-mcp-server [--listen ADDR] [--json] [--stateless]"),
        }
    }
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!(
        "demo MCP server on http://{}/mcp ({mode:?})",
        listener.local_addr()?
    );
    let ct = CancellationToken::new();
    let stop = ct.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    demo::serve(listener, mode, ct).await
}
