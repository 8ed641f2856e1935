//! Plugin configuration: `Config::parse` never panics, whatever the bytes; a configuration it
//! accepts also configures a root (through the fake host) and its compiled parts work.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcptrail::config::Config;
use mcptrail::host::fake::FakeHost;
use mcptrail::filter::Root;

fuzz_target!(|input: &[u8]| {
    let parsed = Config::parse(input);
    let host = FakeHost::default();
    let mut root = Root::default();
    let configured = root.configure(&host, input);
    assert_eq!(parsed.is_ok(), configured, "configure agrees with parse");
    match parsed {
        Err(e) => {
            // One clear line naming the key.
            let line = e.to_string();
            assert!(line.starts_with("invalid configuration"), "{line}");
            assert!(host.logged(&e.message), "the log names the problem");
        }
        Ok(c) => {
            for p in ["/", "/mcp", "/mcp/x?y", "", "?", "/.well-known/oauth-protected-resource"] {
                let _ = c.mcp.in_scope(p);
            }
            for t in ["tools/call", "", "x*"] {
                let _ = c.policy.decide(t, Some("delete_all"), &["admins".to_string()]);
            }
            assert!(c.mcp.max_body_bytes > 0);
            assert!(c.audit.buffer_max_records >= c.audit.batch_max_records);
            assert!(root.new_stream(2).is_some());
            root.on_tick(&host);
        }
    }
});
