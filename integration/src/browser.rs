//! The page scripts (`integration/browser/*.mjs`) in Debian's headless Chromium, run by the
//! project's Node 22 with playwright-core from `.tools/browser` (`make setup`).

use serde_json::Value;

use crate::authz::node_bin;
use crate::envoy::{repo_root, tools_dir};

/// Runs `integration/browser/<script>` with `args` (plus `tools`, the `.tools` directory) and
/// returns the JSON object it printed, or what it printed when it failed.
pub fn run(script: &str, args: &Value) -> Result<Value, String> {
    let mut args = args.clone();
    args["tools"] = Value::from(tools_dir().to_string_lossy().into_owned());
    let out = std::process::Command::new(node_bin())
        .arg(repo_root().join("integration/browser").join(script))
        .arg(args.to_string())
        .output()
        .map_err(|e| format!("cannot run node ({}): {e}", node_bin().display()))?;
    let printed = || {
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    if !out.status.success() {
        return Err(printed());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("{e}: {}", printed()))
}
