//! The demo MCP server (official Rust SDK, Streamable HTTP): tools that echo, return
//! secret-looking data, fail, raise JSON-RPC errors, and stream progress.

use std::time::Duration;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, ProgressNotificationParam, RequestMetaObject, ServerCapabilities,
    ServerConfig,
};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{schemars, tool, tool_handler, tool_router, ErrorData, Peer, RoleServer, ServerHandler};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct EchoArgs {
    /// Text to send back.
    pub text: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CustomerArgs {
    /// Customer id.
    pub id: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct LoginArgs {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct DivideArgs {
    pub a: f64,
    pub b: f64,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ProgressArgs {
    /// Number of progress notifications before the result.
    pub steps: u32,
    /// Pause between steps, in milliseconds.
    #[serde(default)]
    pub delay_ms: u64,
}

#[derive(Debug, Clone)]
pub struct Demo {
    // Read by the code `#[tool_handler]` generates.
    #[allow(dead_code)]
    tool_router: ToolRouter<Self>,
}

impl Default for Demo {
    fn default() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }
}

#[tool_router]
impl Demo {
    #[tool(description = "Echo the text back")]
    fn echo(&self, Parameters(EchoArgs { text }): Parameters<EchoArgs>) -> String {
        text
    }

    #[tool(description = "Look up a customer record (returns personal data)")]
    fn get_customer(&self, Parameters(CustomerArgs { id }): Parameters<CustomerArgs>) -> String {
        serde_json::json!({
            "id": id,
            "name": "Jane Doe",
            "email": "jane.doe@example.com",
            "ssn": "123-45-6789",
            "card": "4111 1111 1111 1111",
            "api_key": "AKIAIOSFODNN7EXAMPLE",
        })
        .to_string()
    }

    #[tool(
        description = "Delete a customer record (the demo policy holds it for an admin's approval)"
    )]
    fn delete_customer(&self, Parameters(CustomerArgs { id }): Parameters<CustomerArgs>) -> String {
        format!("customer {id} deleted")
    }

    #[tool(description = "Log in with a password (secret in the arguments)")]
    fn login(&self, Parameters(LoginArgs { username, .. }): Parameters<LoginArgs>) -> String {
        format!("welcome {username}")
    }

    #[tool(description = "Divide a by b; b = 0 is a JSON-RPC error")]
    fn divide(
        &self,
        Parameters(DivideArgs { a, b }): Parameters<DivideArgs>,
    ) -> Result<String, ErrorData> {
        if b == 0.0 {
            return Err(ErrorData::invalid_params("division by zero", None));
        }
        Ok((a / b).to_string())
    }

    #[tool(description = "Always fails with a tool error (isError: true)")]
    fn fail(&self) -> CallToolResult {
        CallToolResult::error(vec![ContentBlock::text("the tool failed on purpose")])
    }

    #[tool(description = "Stream progress notifications, then finish")]
    async fn progress(
        &self,
        Parameters(ProgressArgs { steps, delay_ms }): Parameters<ProgressArgs>,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
    ) -> String {
        if let Some(token) = meta.get_progress_token() {
            for step in 1..=steps {
                let _ = peer
                    .notify_progress(
                        ProgressNotificationParam::new(token.clone(), f64::from(step))
                            .with_total(f64::from(steps))
                            .with_message(format!("step {step}")),
                    )
                    .await;
                if delay_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                }
            }
        }
        format!("done after {steps} steps")
    }
}

#[tool_handler]
impl ServerHandler for Demo {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_instructions("mcptrail demo server")
    }
}

/// How the demo server answers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mode {
    /// `application/json` responses where possible (else `text/event-stream`).
    pub json: bool,
    /// No sessions (every request stands alone).
    pub stateless: bool,
}

/// Serves the demo at `/mcp` until `ct` is cancelled.
pub async fn serve(listener: TcpListener, mode: Mode, ct: CancellationToken) -> anyhow::Result<()> {
    let config = StreamableHttpServerConfig::default()
        .with_json_response(mode.json)
        .with_legacy_session_mode(!mode.stateless)
        .with_sse_keep_alive(None)
        // Behind Envoy the Host header is whatever the client used.
        .disable_allowed_hosts()
        .with_cancellation_token(ct.child_token());
    let service: StreamableHttpService<Demo, LocalSessionManager> =
        StreamableHttpService::new(|| Ok(Demo::default()), Default::default(), config);
    let app = axum::Router::new().nest_service("/mcp", service);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { ct.cancelled_owned().await })
        .await?;
    Ok(())
}
