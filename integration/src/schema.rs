//! The audit record's JSON Schema (`docs/record.schema.json`, draft 2020-12): the harness
//! checks every record the collector stores against it.

use std::sync::OnceLock;

use serde_json::Value;

/// The schema document, as checked in.
pub const SCHEMA: &str = include_str!("../../docs/record.schema.json");

fn validator() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| {
        let schema: Value = serde_json::from_str(SCHEMA)
            .unwrap_or_else(|e| panic!("docs/record.schema.json is not JSON: {e}"));
        jsonschema::draft202012::new(&schema)
            .unwrap_or_else(|e| panic!("docs/record.schema.json is not a valid schema: {e}"))
    })
}

/// Checks one record; the error lists every violation with where it is in the record.
pub fn check(record: &Value) -> Result<(), String> {
    let errors: Vec<String> = validator()
        .iter_errors(record)
        .map(|e| {
            let at = e.instance_path().to_string();
            format!(
                "at {} (schema {}): {e}",
                if at.is_empty() { "/" } else { &at },
                e.schema_path()
            )
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}

/// Checks one stored line (it must be JSON, and a valid record).
pub fn check_line(line: &str) -> Result<(), String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    check(&v)
}

#[cfg(test)]
mod tests {
    //! Records of every kind, built with the filter's own types and sealed by its chain, so
    //! the schema and the filter cannot drift apart unnoticed; and records the schema must
    //! refuse.

    use super::*;
    use mcptrail::audit::chain::Chain;
    use mcptrail::audit::record::{
        Approval, AuthInfo, DropReason, Dropped, Identity, Kind, Mcp, Outcome, PolicyInfo, Record,
        SessionSummary, Source, Status,
    };
    use serde_json::json;

    const TS: &str = "2026-11-24T10:00:00.123Z";
    const ID: &str = "0b6f1a9e-33c1-4d2a-9f10-5c6d7e8f9a0b";

    fn identity() -> Identity {
        Identity {
            sub: Some("alice".into()),
            iss: Some("https://idp.example.com".into()),
            email: Some("alice@example.com".into()),
            groups: vec!["eng".into()],
            client_id: Some("agent-1".into()),
        }
    }

    fn outcome(status: Status, http: u32) -> Outcome {
        Outcome {
            status,
            http_status: Some(http),
            is_error: false,
            error: None,
            duration_ms: Some(12),
            response_bytes: Some(512),
            notifications: 0,
            server_requests: 0,
            result_preview: None,
        }
    }

    fn request(kind: Kind, method: &str, status: Status) -> Record {
        let mut r = Record::new(kind, TS.into(), ID.into());
        r.session = Some("sess-1".into());
        r.request_id = Some("8a1c0e7e-0000-4000-8000-000000000001".into());
        r.identity = Some(identity());
        r.source = Some(Source {
            address: Some("10.0.0.7:51234".into()),
        });
        r.mcp = Some(Mcp {
            method: Some(method.into()),
            id: Some(json!(7)),
            protocol_version: Some("2025-06-18".into()),
            ..Default::default()
        });
        r.outcome = Some(outcome(status, 200));
        r.envoy = Some(mcptrail::audit::record::EnvoyInfo {
            route: Some("mcp".into()),
            cluster: Some("mcp_server".into()),
        });
        r
    }

    /// One record of every kind (and the optional fields each may carry).
    fn every_kind() -> Vec<Record> {
        let mut out = Vec::new();

        let mut start = request(Kind::SessionStart, "initialize", Status::Ok);
        if let Some(m) = start.mcp.as_mut() {
            m.client = Some(json!({"name": "agent", "version": "1.0"}));
        }
        out.push(start);

        let mut end = Record::new(Kind::SessionEnd, TS.into(), ID.into());
        end.session = Some("sess-1".into());
        end.source = Some(Source { address: None });
        end.outcome = Some(outcome(Status::Ok, 200));
        end.reason = Some("closed by the client (DELETE)".into());
        end.session_summary = Some(SessionSummary {
            started: Some("2026-11-24T09:59:00.000Z".into()),
            duration_ms: Some(60_123),
            commands: 3,
        });
        out.push(end);

        let mut call = request(Kind::Command, "tools/call", Status::Error);
        if let Some(m) = call.mcp.as_mut() {
            m.tool = Some("query_db".into());
            m.arguments = Some(json!({"sql": "select 1", "password": "[REDACTED]"}));
            m.header_mismatch = true;
            m.session_identity_mismatch = true;
        }
        if let Some(o) = call.outcome.as_mut() {
            o.error = Some(json!({"code": -32602, "message": "bad", "data": {"x": 1}}));
        }
        call.masked = vec!["/params/arguments/password".into()];
        out.push(call);

        let mut prompt = request(Kind::Command, "prompts/get", Status::Ok);
        if let Some(m) = prompt.mcp.as_mut() {
            m.id = Some(json!("req-1"));
            m.prompt = Some("summarise".into());
            m.arguments = Some(json!({"topic": "x"}));
        }
        out.push(prompt);

        let mut read = request(Kind::Command, "resources/read", Status::UpstreamError);
        if let Some(m) = read.mcp.as_mut() {
            m.resource = Some("file:///etc/motd".into());
        }
        if let Some(o) = read.outcome.as_mut() {
            o.http_status = Some(502);
        }
        out.push(read);

        // A response the client sent (to a server request): no method.
        let mut reply = request(Kind::Command, "x", Status::Aborted);
        if let Some(m) = reply.mcp.as_mut() {
            m.method = None;
        }
        if let Some(o) = reply.outcome.as_mut() {
            o.http_status = None;
            o.duration_ms = None;
            o.response_bytes = None;
        }
        out.push(reply);

        let mut note = request(Kind::Notification, "notifications/initialized", Status::Ok);
        if let Some(m) = note.mcp.as_mut() {
            m.id = None;
        }
        note.identity = None;
        out.push(note);

        let mut auth = Record::new(Kind::AuthDenied, TS.into(), ID.into());
        auth.source = Some(Source {
            address: Some("127.0.0.1:4000".into()),
        });
        auth.outcome = Some(outcome(Status::Denied, 401));
        auth.reason = Some("the token has expired".into());
        auth.auth = Some(AuthInfo {
            error: "expired".into(),
            issuer: Some("https://idp.example.com".into()),
            kid: Some("k1".into()),
        });
        out.push(auth);

        // Refused after the token verified: identity known, the call named.
        let mut scope = request(Kind::AuthDenied, "tools/call", Status::Denied);
        if let Some(o) = scope.outcome.as_mut() {
            o.http_status = Some(403);
        }
        scope.reason = Some("missing scopes: mcp".into());
        scope.auth = Some(AuthInfo {
            error: "insufficient_scope".into(),
            issuer: Some("https://idp.example.com".into()),
            kid: None,
        });
        out.push(scope);

        let mut denied = request(Kind::PolicyDenied, "tools/call", Status::Denied);
        if let Some(m) = denied.mcp.as_mut() {
            m.tool = Some("delete_user".into());
            m.arguments = Some(json!({"id": 3}));
        }
        denied.reason = Some("denied by policy rule 1".into());
        denied.policy = Some(PolicyInfo { rule: Some(1) });
        out.push(denied);

        let mut by_default = denied_default();
        by_default.policy = Some(PolicyInfo { rule: None });
        out.push(by_default);

        let mut bad = Record::new(Kind::DecodeError, TS.into(), ID.into());
        bad.source = Some(Source {
            address: Some("127.0.0.1:4000".into()),
        });
        bad.outcome = Some(outcome(Status::Error, 400));
        bad.reason = Some("not JSON: expected value at line 1 column 1".into());
        out.push(bad);

        for reason in [DropReason::BufferFull, DropReason::RetriesExhausted] {
            let mut dropped = Record::new(Kind::AuditDropped, TS.into(), ID.into());
            dropped.dropped = Some(Dropped { count: 42, reason });
            out.push(dropped);
        }

        // A request the server sent, recorded as it came (mcp.record_notifications).
        let mut sampling = request(Kind::Notification, "sampling/createMessage", Status::Ok);
        if let Some(m) = sampling.mcp.as_mut() {
            m.id = Some(json!("s-1"));
            m.direction = Some("server_to_client".into());
            m.event_id = Some("e2".into());
        }
        out.push(sampling);

        // A command whose answer counted server messages, and the reply owed to a cut
        // stream, delivered on the resumed one.
        let mut long = request(Kind::Command, "tools/call", Status::Ok);
        if let Some(o) = long.outcome.as_mut() {
            o.notifications = 3;
            o.server_requests = 1;
            o.result_preview =
                Some(r#"{"content":[{"text":"[REDACTED] rows","type":"text"}]}"#.into());
        }
        out.push(long);
        let mut resumed = request(Kind::Command, "tools/call", Status::Ok);
        if let Some(m) = resumed.mcp.as_mut() {
            m.event_id = Some("e3".into());
            m.last_event_id = Some("e1".into());
        }
        resumed.reason = Some("reply delivered on a resumed stream (Last-Event-ID)".into());
        out.push(resumed);

        // A call under a review rule: held, let through approved, denied; and the decision
        // the approval service records on its own stream.
        let held_call = |kind: Kind, status: Status| {
            let mut r = request(kind, "tools/call", status);
            if let Some(m) = r.mcp.as_mut() {
                m.tool = Some("delete_user".into());
                m.arguments = Some(json!({"id": 3, "password": "[REDACTED]"}));
            }
            r
        };
        let mut held = held_call(Kind::ApprovalRequested, Status::Denied);
        held.reason = Some("held for approval `apr_1`".into());
        held.approval = Some(Approval {
            id: "apr_1".into(),
            url: Some("https://approvals.example.com/requests/apr_1".into()),
            ..Approval::default()
        });
        out.push(held);
        let mut approved = held_call(Kind::Command, Status::Ok);
        approved.approval = Some(Approval {
            id: "apr_1".into(),
            approved_by: Some("bob".into()),
            mode: Some("once".into()),
            ..Approval::default()
        });
        out.push(approved);
        let mut refused = held_call(Kind::PolicyDenied, Status::Denied);
        refused.reason = Some("needs approval: approval `apr_2` was denied by `bob`".into());
        refused.policy = Some(PolicyInfo { rule: Some(0) });
        refused.approval = Some(Approval {
            id: "apr_2".into(),
            ..Approval::default()
        });
        out.push(refused);
        let mut decided = Record::new(Kind::ApprovalDecided, TS.into(), ID.into());
        decided.identity = Some(identity());
        decided.mcp = Some(Mcp {
            method: Some("tools/call".into()),
            tool: Some("delete_user".into()),
            arguments: Some(json!({"id": 3})),
            ..Default::default()
        });
        decided.approval = Some(Approval {
            id: "apr_1".into(),
            approved_by: Some("bob".into()),
            mode: Some("window".into()),
            decision: Some("approved".into()),
            window_s: Some(600),
            note: Some("for the migration".into()),
            requester: Some(identity()),
            arguments_sha256: Some("0".repeat(64)),
            requested_at: Some(TS.into()),
            ..Approval::default()
        });
        out.push(decided);
        out
    }

    fn denied_default() -> Record {
        let mut r = request(Kind::PolicyDenied, "prompts/list", Status::Denied);
        r.reason = Some("denied by policy default".into());
        r
    }

    /// Sealed lines, with and without a MAC, as the outbox writes them.
    fn lines(records: &[Record], key: Option<&[u8]>) -> Vec<Value> {
        let mut chain = Chain::new("00c0ffee00c0ffee".into(), key.map(<[u8]>::to_vec));
        records
            .iter()
            .map(|r| {
                let line = chain.seal(serde_json::to_string(r).unwrap());
                serde_json::from_str(&line).unwrap()
            })
            .collect()
    }

    #[test]
    fn the_schema_is_valid_draft_2020_12() {
        let schema: Value = serde_json::from_str(SCHEMA).unwrap();
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        jsonschema::meta::validate(&schema).unwrap();
    }

    #[test]
    fn every_kind_validates() {
        let records = every_kind();
        let kinds: std::collections::BTreeSet<&str> =
            records.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(
            kinds.len(),
            10,
            "one record of each kind at least: {kinds:?}"
        );
        for key in [Some(b"secret-key-for-demo-only".as_slice()), None] {
            for v in lines(&records, key) {
                if let Err(e) = check(&v) {
                    panic!("valid record refused:\n{v}\n{e}");
                }
            }
        }
    }

    #[test]
    fn the_schema_documents_every_field_of_the_record_type() {
        // Every field the filter's types can emit is declared in the schema.
        let schema: Value = serde_json::from_str(SCHEMA).unwrap();
        let declared = |at: &str| -> Vec<String> {
            schema
                .pointer(at)
                .and_then(Value::as_object)
                .unwrap()
                .keys()
                .cloned()
                .collect()
        };
        let records = every_kind();
        for v in lines(&records, Some(b"k")) {
            for (object, at) in [
                (&v, "/properties"),
                (&v["mcp"], "/$defs/mcp/properties"),
                (&v["outcome"], "/$defs/outcome/properties"),
                (&v["identity"], "/$defs/identity/properties"),
                (&v["chain"], "/$defs/chain/properties"),
                (&v["approval"], "/$defs/approval/properties"),
            ] {
                for k in object.as_object().map(|o| o.keys()).into_iter().flatten() {
                    assert!(declared(at).contains(k), "{k} is not declared at {at}");
                }
            }
        }
    }

    fn refused(mut v: Value, edit: impl FnOnce(&mut Value), why: &str) {
        edit(&mut v);
        assert!(check(&v).is_err(), "the schema accepted {why}:\n{v}");
    }

    #[test]
    fn invalid_records_are_refused_with_their_place() {
        let records = every_kind();
        let all = lines(&records, Some(b"k"));
        let call = all[2].clone();
        let of_kind = |k: &str| all.iter().find(|v| v["kind"] == k).unwrap().clone();
        let dropped = of_kind("audit.dropped");
        let auth = of_kind("auth.denied");
        refused(
            call.clone(),
            |v| v["kind"] = json!("tool.call"),
            "an unknown kind",
        );
        refused(call.clone(), |v| v["v"] = json!(2), "another version");
        refused(
            call.clone(),
            |v| v["ts"] = json!("2026-11-24T10:00:00Z"),
            "a ts without ms",
        );
        refused(
            call.clone(),
            |v| v["ts"] = json!("2026-11-24T10:00:00.123+01:00"),
            "a ts not in UTC",
        );
        refused(call.clone(), |v| v["id"] = json!("r1"), "a non-UUID id");
        refused(
            call.clone(),
            |v| {
                v.as_object_mut().unwrap().remove("session");
            },
            "a missing field",
        );
        refused(
            call.clone(),
            |v| v["route"] = json!("x"),
            "an undocumented field",
        );
        refused(
            call.clone(),
            |v| v["mcp"]["secret"] = json!("x"),
            "an undocumented mcp field",
        );
        refused(
            call.clone(),
            |v| v["mcp"]["id"] = json!({"a": 1}),
            "an object id",
        );
        refused(
            call.clone(),
            |v| v["outcome"]["status"] = json!("fine"),
            "an unknown status",
        );
        refused(
            call.clone(),
            |v| v["outcome"]["http_status"] = json!(200.5),
            "a fractional HTTP status",
        );
        refused(
            call.clone(),
            |v| v["mcp"]["header_mismatch"] = json!(false),
            "header_mismatch false (absent instead)",
        );
        refused(
            call.clone(),
            |v| v["masked"] = json!(["params/arguments"]),
            "a masked entry that is no JSON Pointer",
        );
        refused(
            call.clone(),
            |v| v["chain"]["prev"] = json!("ABC"),
            "a bad prev",
        );
        refused(call.clone(), |v| v["chain"]["seq"] = json!(0), "seq 0");
        refused(
            call.clone(),
            |v| v["dropped"] = json!({"count": 1, "reason": "buffer_full"}),
            "dropped on a command",
        );
        refused(
            call.clone(),
            |v| v["reason"] = json!("x"),
            "reason on a command",
        );
        refused(
            call.clone(),
            |v| v["outcome"] = Value::Null,
            "a command without outcome",
        );
        refused(
            dropped.clone(),
            |v| {
                v.as_object_mut().unwrap().remove("dropped");
            },
            "audit.dropped without dropped",
        );
        refused(
            dropped.clone(),
            |v| v["dropped"]["count"] = json!(0),
            "a zero drop count",
        );
        refused(
            dropped,
            |v| v["dropped"]["reason"] = json!("lost"),
            "an unknown drop reason",
        );
        refused(
            auth.clone(),
            |v| {
                v.as_object_mut().unwrap().remove("auth");
            },
            "auth.denied without auth",
        );
        refused(
            auth.clone(),
            |v| v["auth"]["error"] = json!("nope"),
            "an unknown auth error code",
        );
        refused(
            auth,
            |v| v["auth"]["token"] = json!("eyJ..."),
            "a token in auth",
        );
        // The error names the record's place.
        let mut v = call.clone();
        v["outcome"]["status"] = json!("fine");
        let e = check(&v).unwrap_err();
        assert!(e.contains("/outcome/status"), "{e}");
    }
}
