//! The webhook for new requests: Slack-compatible `{"text": ...}` naming the caller, the
//! tool and the page, never the arguments (masked or not, they stay on the page). Failures
//! are logged; they never fail a check.

use serde_json::json;

/// The message text for a new pending request.
pub fn text(sub: &str, tool: &str, url: &str) -> String {
    format!("mcptrail: {sub} asks to call `{tool}`; approve or deny at {url}")
}

/// Posts the message in the background.
pub fn new_request(http: &reqwest::Client, notify_url: &str, sub: &str, tool: &str, url: &str) {
    let body = json!({ "text": text(sub, tool, url) });
    let req = http.post(notify_url).json(&body);
    tokio::spawn(async move {
        match req
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
        {
            Ok(_) => {}
            Err(e) => eprintln!("approvals: notify_url failed: {e}"),
        }
    });
}
