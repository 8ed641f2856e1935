#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::json;

use super::*;
use crate::config::Config;

const AUDIT_KEY: &str = "c2VjcmV0LWtleS1mb3ItZGVtby1vbmx5";

/// A masker from a `masking` section (with an `audit.hmac_key`, so `hash` works).
fn masker(masking: Value) -> Masker {
    let cfg = json!({"audit": {"cluster": "c", "hmac_key": AUDIT_KEY}, "masking": masking});
    Config::parse(cfg.to_string().as_bytes()).unwrap().masking
}

fn all_detectors() -> Masker {
    let names: Vec<&str> = Detector::ALL.iter().map(|d| d.name()).collect();
    masker(json!({ "detectors": names }))
}

/// What `d` finds in `s`, as text (checking that the prefilter would have let it run).
fn found(d: Detector, s: &str) -> Vec<String> {
    let mut v = Vec::new();
    d.find(s, &mut |a, b| v.push(s[a..b].to_string()));
    assert!(
        v.is_empty() || d.applies(&detectors::Features::of(s)),
        "{} prefilter hides a match in {s:?}",
        d.name()
    );
    v
}

fn gcp_key() -> String {
    let k = format!("AIza{}", "SyA1b2C3d4E5f6G7h8I9j0K_L-mNoPqRsTu");
    assert_eq!(k.len(), 39);
    k
}

fn github_classic() -> String {
    format!("ghp_{}", "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8")
}

const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
const PEM: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo\n4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u\n-----END RSA PRIVATE KEY-----";

#[test]
fn detector_names_round_trip() {
    for d in Detector::ALL {
        assert_eq!(Detector::from_name(d.name()), Some(d));
        assert!(d.min_len() > 0);
    }
    assert_eq!(Detector::from_name("ssn"), None);
}

/// True and false positives for every detector: (detector, input, what must be found).
#[test]
fn detector_table() {
    let gcp = gcp_key();
    let ghp = github_classic();
    let fine_grained = format!(
        "github_pat_11ABCDEFG0{}",
        "a1B2c3D4e5_F6g7H8i9J0k1L2m3N4o5P6q7R8s9T0u1V2w3X4y5Z6a7B8c9D0e1F2g3H4i5J6k7L8m9"
    );
    let pem_cut =
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7";
    let openssh =
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----";
    let cases: Vec<(Detector, String, Vec<String>)> = [
        // e-mail
        (
            Detector::Email,
            "mail alice@example.com now",
            vec!["alice@example.com"],
        ),
        (
            Detector::Email,
            "<Bob.Smith+tag@mail.example.co.uk>",
            vec!["Bob.Smith+tag@mail.example.co.uk"],
        ),
        (
            Detector::Email,
            "x_y-z%1@sub-domain.example.org.",
            vec!["x_y-z%1@sub-domain.example.org"],
        ),
        (Detector::Email, "a@b.io,c@d.com", vec!["a@b.io", "c@d.com"]),
        (
            Detector::Email,
            "git@github.com:org/repo",
            vec!["git@github.com"],
        ),
        (
            Detector::Email,
            "«josé@example.com» 请联系alice@bücher.de",
            vec!["«josé@example.com", "请联系alice@bücher.de"],
        ),
        (
            // A local part longer than 64 bytes is masked whole, never cut.
            Detector::Email,
            &format!("{}x@example.com", "请".repeat(30)),
            vec![&format!("{}x@example.com", "请".repeat(30))],
        ),
        (
            // Fuzz finding (target `mask`): cut at 64 bytes, the rest (`8@23008.eee…`) was an
            // address of its own, left unmasked.
            Detector::Email,
            &format!("8@23008.{}OOO8.OOOӸOOOOOOO@23008.OOO", "e".repeat(110)),
            vec![&format!("23008.{}OOO8.OOOӸOOOOOOO@23008.OOO", "e".repeat(110))[..]],
        ),
        (Detector::Email, "icon@2x.png", vec![]),
        (Detector::Email, "user@localhost", vec![]),
        (Detector::Email, "npm i @scope/pkg react@18.2.0", vec![]),
        (Detector::Email, "a@b.c foo@.com @@ x@", vec![]),
        (Detector::Email, ".@example.com", vec![]),
        // credit cards (Luhn)
        (
            Detector::CreditCard,
            "card 4111111111111111 ok",
            vec!["4111111111111111"],
        ),
        (
            Detector::CreditCard,
            "4242 4242 4242 4242",
            vec!["4242 4242 4242 4242"],
        ),
        (
            Detector::CreditCard,
            "5555-5555-5555-4444",
            vec!["5555-5555-5555-4444"],
        ),
        (
            Detector::CreditCard,
            "amex 3782 822463 10005",
            vec!["3782 822463 10005"],
        ),
        (
            Detector::CreditCard,
            "6011111111111117;2223003122003222",
            vec!["6011111111111117", "2223003122003222"],
        ),
        (
            Detector::CreditCard,
            "Order 2024 4111111111111111",
            vec!["4111111111111111"],
        ),
        (Detector::CreditCard, "4111111111111112", vec![]),
        (Detector::CreditCard, "4242 4242 4242 4241", vec![]),
        (
            Detector::CreditCard,
            "epoch 1700000000000 and 1700000000000000",
            vec![],
        ),
        (Detector::CreditCard, "2024-01-15T10:30:45.123Z", vec![]),
        (Detector::CreditCard, "id 41111111111111111111111", vec![]),
        (
            Detector::CreditCard,
            "x4111111111111111 4111111111111111abc",
            vec![],
        ),
        (
            Detector::CreditCard,
            "v1.2.3 192.168.100.200 +1 415 555 2671",
            vec![],
        ),
        (
            Detector::CreditCard,
            "order 8111111111111111 (first digit 8)",
            vec![],
        ),
        // US SSN
        (Detector::UsSsn, "ssn 123-45-6789.", vec!["123-45-6789"]),
        (Detector::UsSsn, "078 05 1120", vec!["078 05 1120"]),
        (
            Detector::UsSsn,
            "000-12-3456 666-12-3456 900-12-3456",
            vec![],
        ),
        (Detector::UsSsn, "123-00-4567 123-45-0000", vec![]),
        (
            Detector::UsSsn,
            "2024-01-15 1-123-45-6789 123-45-6789-1 123456789",
            vec![],
        ),
        (Detector::UsSsn, "123-45 6789 a123-45-6789", vec![]),
        // IBAN (mod 97, country length)
        (
            Detector::Iban,
            "IBAN DE89 3704 0044 0532 0130 00 thanks",
            vec!["DE89 3704 0044 0532 0130 00"],
        ),
        (
            Detector::Iban,
            "GB29NWBK60161331926819",
            vec!["GB29NWBK60161331926819"],
        ),
        (
            Detector::Iban,
            "FR14 2004 1010 0505 0001 3M02 606",
            vec!["FR14 2004 1010 0505 0001 3M02 606"],
        ),
        (
            Detector::Iban,
            "nl91abna0417164300 BE68539007547034",
            vec!["nl91abna0417164300", "BE68539007547034"],
        ),
        (Detector::Iban, "DE89 3704 0044 0532 0130 01", vec![]),
        (Detector::Iban, "XX89370400440532013000", vec![]),
        (
            Detector::Iban,
            "DE8937040044053201300 DE893704004405320130001",
            vec![],
        ),
        (
            Detector::Iban,
            "gb29NWBK60161331926819 xDE89370400440532013000",
            vec![],
        ),
        (
            Detector::Iban,
            "DE89 37040044 0532 0130 00",
            vec!["DE89 37040044 0532 0130 00"],
        ),
        (
            Detector::Iban,
            "DE893 704 0044 0532 0130 00 DE89-3704-0044-0532-0130-00",
            vec![],
        ),
        // phone (E.164)
        (Detector::Phone, "call +14155552671.", vec!["+14155552671"]),
        (
            Detector::Phone,
            "+1 (415) 555-2671",
            vec!["+1 (415) 555-2671"],
        ),
        (
            Detector::Phone,
            "+44 20 7946 0958, +49-30-123456",
            vec!["+44 20 7946 0958", "+49-30-123456"],
        ),
        (Detector::Phone, "+1.5 1e+10 +123 +0 1234567890", vec![]),
        (Detector::Phone, "2024-01-15T10:30:00+01:00 +0100", vec![]),
        (
            Detector::Phone,
            "+1234567890123456 tel 555-123-4567 a+14155552671",
            vec![],
        ),
        (Detector::Phone, "+1 (415 555 2671 +14155552671x", vec![]),
        // IPv4
        (Detector::Ipv4, "from 10.0.0.7:51234", vec!["10.0.0.7"]),
        (
            Detector::Ipv4,
            "8.8.8.8,192.168.1.254",
            vec!["8.8.8.8", "192.168.1.254"],
        ),
        (
            Detector::Ipv4,
            "1.2.3.4.5 256.1.1.1 01.02.03.04 1.2.3",
            vec![],
        ),
        (
            Detector::Ipv4,
            "v1.2.3.4 version 1.2.3.4 Version: 10.0.0.1",
            vec![],
        ),
        (Detector::Ipv4, "a1.2.3.4 1.2.3.4b 1.2.3.4-5", vec![]),
        // JWT
        (Detector::Jwt, &format!("token={JWT}&x"), vec![JWT]),
        (
            Detector::Jwt,
            "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
            vec!["eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."],
        ),
        (
            Detector::Jwt,
            "eyJhbGciOiJIUzI1NiJ9 eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0",
            vec![],
        ),
        (Detector::Jwt, &format!("x{JWT}"), vec![]),
        // bearer tokens: only the credential
        (
            Detector::BearerToken,
            "Authorization: Bearer abc123def456",
            vec!["abc123def456"],
        ),
        (
            Detector::BearerToken,
            "bearer  mF_9.B5f-4.1JqM==",
            vec!["mF_9.B5f-4.1JqM=="],
        ),
        (
            Detector::BearerToken,
            "the bearer of bad news; Bearer instrument; Bearer Authentication",
            vec![],
        ),
        (
            Detector::BearerToken,
            "xBearer abc123def456 Bearer abc1",
            vec![],
        ),
        // AWS access key ids
        (
            Detector::AwsAccessKey,
            "key=AKIAIOSFODNN7EXAMPLE;",
            vec!["AKIAIOSFODNN7EXAMPLE"],
        ),
        (
            Detector::AwsAccessKey,
            "ASIAY34FZKBOKMUTVV7A A3TXIOSFODNN7EXAMPLE",
            vec!["ASIAY34FZKBOKMUTVV7A", "A3TXIOSFODNN7EXAMPLE"],
        ),
        (
            Detector::AwsAccessKey,
            "AKIAIOSFODNN7EXAMPL AKIAIOSFODNN7EXAMPLEX",
            vec![],
        ),
        (
            Detector::AwsAccessKey,
            "xAKIAIOSFODNN7EXAMPLE AKIAiosfodnn7example AIDAIOSFODNN7EXAMPLE",
            vec![],
        ),
        // GCP API keys
        (
            Detector::GcpApiKey,
            &format!("key={gcp}&"),
            vec![gcp.as_str()],
        ),
        (Detector::GcpApiKey, &gcp[..38], vec![]),
        (Detector::GcpApiKey, &format!("{gcp}x x{gcp}"), vec![]),
        // GitHub tokens
        (
            Detector::GithubToken,
            &format!("GITHUB_TOKEN={ghp}"),
            vec![ghp.as_str()],
        ),
        (
            Detector::GithubToken,
            &fine_grained,
            vec![fine_grained.as_str()],
        ),
        (
            Detector::GithubToken,
            &format!("ghs_{}", &ghp[4..]),
            vec![&format!("ghs_{}", &ghp[4..])],
        ),
        (
            Detector::GithubToken,
            "ghp_short ghx_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
            vec![],
        ),
        (
            Detector::GithubToken,
            &format!("x{ghp} {}", &ghp[..39]),
            vec![],
        ),
        // Slack tokens
        (
            Detector::SlackToken,
            "xoxb-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
            vec!["xoxb-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"],
        ),
        (
            Detector::SlackToken,
            "t=xoxp-11111-22222-abcdef; xapp-1-A0123-4567-abcdef",
            vec!["xoxp-11111-22222-abcdef", "xapp-1-A0123-4567-abcdef"],
        ),
        (
            Detector::SlackToken,
            "xoxz-1234567890 xoxb-123 axoxb-1234567890",
            vec![],
        ),
        // private keys
        (
            Detector::PrivateKey,
            &format!("key:\n{PEM}\nend"),
            vec![PEM],
        ),
        (Detector::PrivateKey, openssh, vec![openssh]),
        (Detector::PrivateKey, pem_cut, vec![pem_cut]),
        (
            Detector::PrivateKey,
            "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----",
            vec![],
        ),
        (
            Detector::PrivateKey,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
            vec![],
        ),
    ]
    .into_iter()
    .map(|(d, s, want)| {
        (
            d,
            s.to_string(),
            want.into_iter().map(str::to_string).collect(),
        )
    })
    .collect();
    let mut per_detector = [(0usize, 0usize); 13];
    for (d, input, want) in &cases {
        assert_eq!(&found(*d, input), want, "{} on {input:?}", d.name());
        let i = Detector::ALL.iter().position(|x| x == d).unwrap();
        if want.is_empty() {
            per_detector[i].1 += 1;
        } else {
            per_detector[i].0 += 1;
        }
    }
    for (d, (tp, fp)) in Detector::ALL.iter().zip(per_detector) {
        assert!(
            tp > 0 && fp > 0,
            "{} needs true and false positives",
            d.name()
        );
    }
}

#[test]
fn detectors_mask_spans_only() {
    let m = all_detectors();
    let mut msg = json!({"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text",
        "text": "Contact alice@example.com or +1 415 555 2671; card 4111 1111 1111 1111."}]}});
    let masked = m.mask_message(&mut msg);
    assert_eq!(masked, vec!["/result/content/0/text"]);
    assert_eq!(
        msg["result"]["content"][0]["text"],
        "Contact [REDACTED] or [REDACTED]; card [REDACTED]."
    );
    assert_eq!(msg["result"]["content"][0]["type"], "text");
    let mut bearer = json!({"h": "Authorization: Bearer abc123def456"});
    m.mask_message(&mut bearer);
    assert_eq!(bearer["h"], "Authorization: Bearer [REDACTED]");
}

#[test]
fn overlapping_spans_merge() {
    // A JWT after `Bearer `: both detectors match, one replacement.
    let m = all_detectors();
    let mut v = json!(format!("Bearer {JWT}"));
    m.mask_message(&mut v);
    assert_eq!(v, "Bearer [REDACTED]");
    // The stronger action wins where spans of different actions overlap.
    let m = masker(json!({"detectors": [{"name": "jwt", "action": "partial"}, "bearer_token"]}));
    let mut v = json!(format!("Bearer {JWT}"));
    m.mask_message(&mut v);
    assert_eq!(v, "Bearer [REDACTED]");
}

// ---- fields and paths -------------------------------------------------------------------

#[test]
fn fields_match_any_case_and_separator_at_any_depth() {
    let m = masker(json!({"fields": ["api_key", "password"]}));
    let mut msg = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "login",
        "arguments": {"apiKey": "k1", "API-KEY": "k2", "Api_Key": "k3", "apikey": "k4",
            "nested": [{"PassWord": "p"}], "api_keys": "not a match", "keyapi": "no"}}});
    let masked = m.mask_message(&mut msg);
    let a = &msg["params"]["arguments"];
    for k in ["apiKey", "API-KEY", "Api_Key", "apikey"] {
        assert_eq!(a[k], "[REDACTED]", "{k}");
    }
    assert_eq!(a["nested"][0]["PassWord"], "[REDACTED]");
    assert_eq!(a["api_keys"], "not a match");
    assert_eq!(a["keyapi"], "no");
    assert_eq!(msg["params"]["name"], "login");
    let mut sorted = masked.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        vec![
            "/params/arguments/API-KEY",
            "/params/arguments/Api_Key",
            "/params/arguments/apiKey",
            "/params/arguments/apikey",
            "/params/arguments/nested/0/PassWord",
        ]
    );
}

#[test]
fn matched_objects_keep_their_structure() {
    let m = masker(json!({"fields": ["credentials"]}));
    let mut v = json!({"credentials": {"user": "bob", "pins": [1234, 5678], "ok": true,
        "none": null, "deep": {"x": 1.5}}});
    assert_eq!(m.mask_message(&mut v), vec!["/credentials"]);
    assert_eq!(
        v,
        json!({"credentials": {"user": "[REDACTED]", "pins": ["[REDACTED]", "[REDACTED]"],
            "ok": "[REDACTED]", "none": null, "deep": {"x": "[REDACTED]"}}})
    );
    // Nothing left to change: nothing reported.
    assert!(m.mask_message(&mut v).is_empty());
    let mut only_null = json!({"credentials": null});
    assert!(m.mask_message(&mut only_null).is_empty());
}

#[test]
fn paths_with_wildcards() {
    let m = masker(
        json!({"paths": ["/params/arguments/*/ssn", "/result/content/*/text", "/params/list/1"]}),
    );
    let mut msg = json!({"params": {"arguments": {"a": {"ssn": "1", "x": "2"}, "b": {"ssn": {"v": 3}}, "ssn": "top"},
        "list": ["zero", "one", "two"]},
        "result": {"content": [{"type": "text", "text": "t0"}, {"type": "text", "text": "t1"}]}});
    let masked = m.mask_message(&mut msg);
    assert_eq!(
        msg["params"]["arguments"]["a"],
        json!({"ssn": "[REDACTED]", "x": "2"})
    );
    assert_eq!(
        msg["params"]["arguments"]["b"],
        json!({"ssn": {"v": "[REDACTED]"}})
    );
    assert_eq!(msg["params"]["arguments"]["ssn"], "top");
    assert_eq!(msg["params"]["list"], json!(["zero", "[REDACTED]", "two"]));
    assert_eq!(
        msg["result"]["content"][1],
        json!({"type": "text", "text": "[REDACTED]"})
    );
    let mut sorted = masked;
    sorted.sort();
    assert_eq!(
        sorted,
        vec![
            "/params/arguments/a/ssn",
            "/params/arguments/b/ssn",
            "/params/list/1",
            "/result/content/0/text",
            "/result/content/1/text",
        ]
    );
}

#[test]
fn pointers_escape_tilde_and_slash() {
    let m = masker(json!({"fields": ["a/b", "m~n"], "paths": ["/x~1y/*"]}));
    let mut v = json!({"a/b": "1", "m~n": "2", "x/y": {"k": "3"}, "x~1y": {"k": "4"}});
    let mut masked = m.mask_message(&mut v);
    masked.sort();
    assert_eq!(masked, vec!["/a~1b", "/m~0n", "/x~1y/k"]);
    assert_eq!(v["x~1y"]["k"], "4");
    let bad =
        Config::parse(br#"{"audit":{"cluster":"c"},"masking":{"paths":["/a~2b"]}}"#).unwrap_err();
    assert_eq!(bad.key, "masking.paths[0]");
}

#[test]
fn schemas_of_tools_list_are_never_masked() {
    let m = masker(json!({"fields": ["password", "description"], "detectors": ["email"]}));
    let schema = json!({"type": "object", "properties": {"password": {"type": "string",
        "description": "mail admin@example.com"}}});
    let mut msg = json!({"jsonrpc": "2.0", "id": 2, "result": {"tools": [{"name": "login",
        "description": "ask admin@example.com", "inputSchema": schema, "outputSchema": schema}]}});
    let masked = m.mask_message(&mut msg);
    assert_eq!(masked, vec!["/result/tools/0/description"]);
    assert_eq!(msg["result"]["tools"][0]["inputSchema"], schema);
    assert_eq!(msg["result"]["tools"][0]["outputSchema"], schema);
    // Elsewhere the same shape is masked.
    let mut other = json!({"params": {"arguments": {"inputSchema": {"password": "x"}}}});
    assert_eq!(
        m.mask_message(&mut other),
        vec!["/params/arguments/inputSchema/password"]
    );
}

#[test]
fn protocol_members_are_never_masked() {
    let m = masker(
        json!({"fields": ["id", "method", "cursor", "progressToken"],
        "detectors": ["credit_card", "jwt"]}),
    );
    let mut msg = json!({"jsonrpc": "2.0", "id": 4111111111111111u64, "method": "tools/call",
        "params": {"cursor": JWT, "_meta": {"progressToken": "p"}, "arguments": {"id": "x", "n": 4111111111111111u64}}});
    let masked = m.mask_message(&mut msg);
    assert_eq!(msg["id"], 4111111111111111u64);
    assert_eq!(msg["method"], "tools/call");
    assert_eq!(msg["params"]["cursor"], JWT);
    assert_eq!(msg["params"]["_meta"]["progressToken"], "p");
    assert_eq!(msg["params"]["arguments"]["id"], "[REDACTED]");
    assert_eq!(msg["params"]["arguments"]["n"], "[REDACTED]");
    assert_eq!(masked, vec!["/params/arguments/id", "/params/arguments/n"]);
}

// ---- decoded values and embedded JSON --------------------------------------------------

#[test]
fn escaped_text_is_caught_after_decoding() {
    let m = all_detectors();
    let body = br#"{"jsonrpc":"2.0","id":1,"params":{"arguments":{"q":"alice\u0040example\u002ecom \u0041KIAIOSFODNN7EXAMPLE"}}}"#;
    let mut msg: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(m.mask_message(&mut msg), vec!["/params/arguments/q"]);
    assert_eq!(msg["params"]["arguments"]["q"], "[REDACTED] [REDACTED]");
}

#[test]
fn embedded_json_is_masked_and_reported_through_the_string() {
    let m = masker(json!({"fields": ["password"], "detectors": ["email"]}));
    let inner = json!({"user": {"email": "bob@example.com", "password": "hunter2"}, "n": 1});
    let mut msg = json!({"jsonrpc": "2.0", "id": 3, "result": {"content": [
        {"type": "text", "text": serde_json::to_string_pretty(&inner).unwrap()},
        {"type": "text", "text": "{not json but bob@example.com}"},
        {"type": "text", "text": "[1, 2, 3]"}]}});
    let masked = m.mask_message(&mut msg);
    assert_eq!(
        masked,
        vec![
            "/result/content/0/text/user/email",
            "/result/content/0/text/user/password",
            "/result/content/1/text",
        ]
    );
    let text = msg["result"]["content"][0]["text"].as_str().unwrap();
    let back: Value = serde_json::from_str(text).unwrap();
    assert_eq!(
        back,
        json!({"user": {"email": "[REDACTED]", "password": "[REDACTED]"}, "n": 1})
    );
    assert_eq!(
        msg["result"]["content"][1]["text"],
        "{not json but [REDACTED]}"
    );
    // Untouched embedded JSON keeps its original text.
    assert_eq!(msg["result"]["content"][2]["text"], "[1, 2, 3]");
    // Paths reach into the string the same way.
    let m = masker(json!({"paths": ["/result/content/*/text/user/email"]}));
    let mut msg = json!({"result": {"content": [{"type": "text", "text": inner.to_string()}]}});
    assert_eq!(
        m.mask_message(&mut msg),
        vec!["/result/content/0/text/user/email"]
    );
}

#[test]
fn json_inside_json_inside_json() {
    let m = masker(json!({"detectors": ["email"]}));
    let level2 = json!({"mail": "deep\u{40}example.com"}).to_string();
    let level1 = json!({"payload": level2}).to_string();
    let quoted = serde_json::to_string("eve@example.com").unwrap();
    let mut v = json!({"text": level1, "lit": quoted});
    let masked = m.mask_message(&mut v);
    assert_eq!(masked, vec!["/lit", "/text/payload/mail"]);
    let s = v.to_string();
    assert!(!s.contains("example.com"), "{s}");
    assert_eq!(v["lit"], "\"[REDACTED]\"");
}

#[test]
fn keys_holding_secrets_are_renamed() {
    let m = masker(json!({"detectors": ["email"]}));
    let mut v = json!({"scores": {"alice@example.com": 1, "bob@example.com": 2, "[REDACTED]": 0}});
    let mut masked = m.mask_message(&mut v);
    masked.sort();
    assert_eq!(masked, vec!["/scores/[REDACTED]#2", "/scores/[REDACTED]#3"]);
    assert_eq!(v["scores"].as_object().unwrap().len(), 3);
    assert!(!v.to_string().contains("example.com"));
    assert!(m.mask_message(&mut v).is_empty());
}

// ---- actions ----------------------------------------------------------------------------

#[test]
fn partial_keeps_the_tail_only_when_enough_is_hidden() {
    let m = masker(
        json!({"action": "partial", "fields": ["pin", {"name": "card", "keep": 4},
        {"name": "code", "action": "partial", "keep": 2}], "detectors": ["credit_card"]}),
    );
    let mut v = json!({"pin": "1234567", "card": 4111111111111111u64, "code": "abcd",
        "note": "paid with 4111 1111 1111 1111", "short": {"pin": "abc"}});
    m.mask_message(&mut v);
    assert_eq!(v["pin"], "*******");
    assert_eq!(v["card"], "************1111");
    assert_eq!(v["code"], "**cd");
    assert_eq!(v["note"], "paid with ***************1111");
    assert_eq!(v["short"]["pin"], "***");
    let before = v.clone();
    assert!(m.mask_message(&mut v).is_empty());
    assert_eq!(v, before);
}

#[test]
fn hash_is_stable_keyed_and_short() {
    let m = masker(json!({"fields": [{"name": "user", "action": "hash"}],
        "detectors": [{"name": "email", "action": "hash"}]}));
    let mut a = json!({"user": "alice", "note": "from alice@example.com"});
    let mut b = json!({"user": "alice", "note": "again alice@example.com"});
    m.mask_message(&mut a);
    m.mask_message(&mut b);
    let h = a["user"].as_str().unwrap().to_string();
    assert!(is_hash_token(&h), "{h}");
    assert_eq!(a["user"], b["user"]);
    let ha = a["note"].as_str().unwrap().strip_prefix("from ").unwrap();
    let hb = b["note"].as_str().unwrap().strip_prefix("again ").unwrap();
    assert_eq!(ha, hb);
    assert!(is_hash_token(ha));
    assert_ne!(ha, h);
    // Another key, another hash.
    let other = {
        let cfg = json!({"audit": {"cluster": "c"}, "masking": {"hash_key": "b3RoZXIta2V5LW9mLTE2LWJ5dGVz",
            "fields": [{"name": "user", "action": "hash"}]}});
        Config::parse(cfg.to_string().as_bytes()).unwrap().masking
    };
    let mut c = json!({"user": "alice"});
    other.mask_message(&mut c);
    assert!(is_hash_token(c["user"].as_str().unwrap()));
    assert_ne!(c["user"], a["user"]);
    // The derived key is not the audit key itself.
    let audit =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, AUDIT_KEY).unwrap();
    assert_ne!(derive_hash_key(&audit), audit);
    assert_eq!(derive_hash_key(&audit).len(), 32);
    // Hashed output is a fixed point.
    let snapshot = a.clone();
    assert!(m.mask_message(&mut a).is_empty());
    assert_eq!(a, snapshot);
}

#[test]
fn custom_patterns_and_replacement() {
    let m = masker(json!({"replacement": "***", "patterns": [
        {"name": "employee_id", "regex": "EMP-[0-9]{6}"},
        {"name": "ticket", "regex": "(?i)tkt#\\d+", "action": "partial", "keep": 2}]}));
    let mut v = json!({"a": "EMP-123456 and EMP-12345 and TKT#98765", "EMP-654321": 1});
    let mut masked = m.mask_message(&mut v);
    masked.sort();
    assert_eq!(masked, vec!["/***", "/a"]);
    assert_eq!(v["a"], "*** and EMP-12345 and *******65");
    assert_eq!(v["***"], 1);
    // A pattern that matches inside the replacement leaves masked output alone.
    let m = masker(json!({"patterns": [{"name": "caps", "regex": "[A-Z]{4,}"}]}));
    let mut v = json!({"a": "code ABCD here", "h": "hash:0123456789abcdef"});
    assert_eq!(m.mask_message(&mut v), vec!["/a"]);
    assert_eq!(v["a"], "code [REDACTED] here");
    assert!(m.mask_message(&mut v).is_empty());
    let m =
        masker(json!({"patterns": [{"name": "hex", "regex": "[0-9a-f]{16}", "action": "hash"}]}));
    let mut v = json!("id 0123456789abcdef");
    m.mask_message(&mut v);
    let once = v.clone();
    assert!(m.mask_message(&mut v).is_empty());
    assert_eq!(v, once);
    assert_eq!(required_literal("EMP-[0-9]{6}").as_deref(), Some("EMP-"));
    assert_eq!(required_literal("^abc?d").as_deref(), Some("ab"));
    assert_eq!(required_literal("a|b"), None);
    assert_eq!(required_literal("(?i)x"), None);
}

#[test]
fn mask_value_at_and_mask_text() {
    let m = masker(
        json!({"fields": ["password"], "paths": ["/params/arguments/ssn"], "detectors": ["email"]}),
    );
    let mut args = json!({"ssn": "123", "password": "p", "q": "bob@example.com"});
    let mut masked = m.mask_value_at(&mut args, "/params/arguments");
    masked.sort();
    assert_eq!(
        masked,
        vec![
            "/params/arguments/password",
            "/params/arguments/q",
            "/params/arguments/ssn"
        ]
    );
    assert_eq!(
        m.mask_text("bad body from bob@example.com"),
        "bad body from [REDACTED]"
    );
    assert!(matches!(m.mask_text("nothing here"), Cow::Borrowed(_)));
    assert_eq!(
        m.mask_text(r#"{"password":"x","ok":1}"#),
        r#"{"ok":1,"password":"[REDACTED]"}"#
    );
    assert!(Masker::default().is_empty());
    assert!(Masker::default().mask_message(&mut args).is_empty());
    assert!(m.admits(DEFAULT_MAX_BYTES) && !m.admits(DEFAULT_MAX_BYTES + 1));
}

// ---- configuration ----------------------------------------------------------------------

fn config_err(masking: Value) -> crate::config::ConfigError {
    let cfg = json!({"audit": {"cluster": "c"}, "masking": masking});
    Config::parse(cfg.to_string().as_bytes()).unwrap_err()
}

#[test]
fn config_defaults_and_switches() {
    let m = masker(json!({}));
    assert!(m.is_empty());
    assert!(!m.responses && !m.requests);
    assert_eq!(m.max_bytes, DEFAULT_MAX_BYTES);
    assert_eq!(m.on_too_large, OnTooLarge::Pass);
    let m = masker(json!({"fields": ["x"], "responses": true, "requests": true,
        "max_bytes": 1000, "on_too_large": "block"}));
    assert!(!m.is_empty() && m.responses && m.requests);
    assert_eq!((m.max_bytes, m.on_too_large), (1000, OnTooLarge::Block));
    let none = Config::parse(br#"{"audit":{"cluster":"c"}}"#).unwrap();
    assert!(none.masking.is_empty());
    let dbg = format!(
        "{:?}",
        masker(json!({"detectors": ["email"], "hash_key": AUDIT_KEY}))
    );
    assert!(dbg.contains("email") && !dbg.contains(AUDIT_KEY), "{dbg}");
}

#[test]
fn config_errors_name_the_key() {
    let e = config_err(json!({"detectors": ["email", "ssn"]}));
    assert_eq!(e.key, "masking.detectors[1]");
    assert!(e.message.contains("unknown detector `ssn`"), "{e}");
    assert!(e.message.contains("us_ssn"), "{e}");
    let e = config_err(json!({"patterns": [{"name": "emp", "regex": "EMP-[0-9"}]}));
    assert_eq!(e.key, "masking.patterns[0].regex");
    assert!(e.message.contains("`emp`"), "{e}");
    let e =
        config_err(json!({"patterns": [{"name": "a", "regex": "x"}, {"name": "a", "regex": "y"}]}));
    assert_eq!(e.key, "masking.patterns[1].name");
    assert_eq!(config_err(json!({"bogus": 1})).key, "masking.bogus");
    assert_eq!(
        config_err(json!({"fields": [{"name": "a", "acton": "hash"}]})).key,
        "masking.fields[0].acton"
    );
    assert_eq!(
        config_err(json!({"fields": [{"name": "a", "action": "scramble"}]})).key,
        "masking.fields[0].action"
    );
    assert_eq!(config_err(json!({"fields": [7]})).key, "masking.fields[0]");
    assert_eq!(
        config_err(json!({"fields": ["--"]})).key,
        "masking.fields[0]"
    );
    assert_eq!(
        config_err(json!({"paths": ["params"]})).key,
        "masking.paths[0]"
    );
    assert_eq!(
        config_err(json!({"fields": [{"name": "a", "keep": 2}]})).key,
        "masking.fields[0].keep"
    );
    assert_eq!(config_err(json!({"keep": 99})).key, "masking.keep");
    let e = config_err(json!({"fields": [{"name": "a", "action": "hash"}]}));
    assert_eq!(e.key, "masking.hash_key");
    assert_eq!(
        config_err(json!({"hash_key": "c2hvcnQ="})).key,
        "masking.hash_key"
    );
    let e = config_err(json!({"replacement": "me@example.com", "detectors": ["email"]}));
    assert_eq!(e.key, "masking.replacement");
    assert!(e.message.contains("`email`"), "{e}");
    assert_eq!(
        config_err(json!({"replacement": ""})).key,
        "masking.replacement"
    );
    assert_eq!(config_err(json!({"max_bytes": 0})).key, "masking.max_bytes");
    assert_eq!(
        config_err(json!({"on_too_large": "drop"})).key,
        "masking.on_too_large"
    );
    assert_eq!(
        config_err(json!({"detectors": ["email", "email"]})).key,
        "masking.detectors[1]"
    );
}

#[test]
fn renamed_key_and_embedded_value_both_masked() {
    // Found by the property tests: the key's rename and the embedded value's change share
    // one pointer; the value must still be re-serialised.
    let m = all_detectors();
    let inner = serde_json::to_string("call +44 20 7946 0958").unwrap();
    let mut v = json!({ "k alice@example.com": inner });
    assert_eq!(m.mask_message(&mut v), vec!["/k [REDACTED]"]);
    assert_eq!(v, json!({"k [REDACTED]": "\"call [REDACTED]\""}));
}

#[test]
fn json_nested_past_the_limit_goes_whole_when_escaped() {
    let m = all_detectors();
    let mut s = r#"{"m":"carol\u0040example.com"}"#.to_string();
    for _ in 0..4 {
        s = json!({ "t": s }).to_string();
    }
    let mut v = json!({ "text": s });
    let masked = m.mask_message(&mut v);
    assert_eq!(masked, vec!["/text/t/t/t"]);
    assert_eq!(
        v["text"],
        r#"{"t":"{\"t\":\"{\\\"t\\\":\\\"[REDACTED]\\\"}\"}"}"#
    );
    assert!(m.mask_message(&mut v).is_empty());
}

#[test]
fn partial_tails_that_hold_a_match_are_masked_too() {
    // The kept tail of a long address is itself an address: masked again, so the output
    // is a fixed point.
    let m = masker(
        json!({"detectors": [{"name": "email", "action": "partial", "keep": 7}],
        "patterns": [{"name": "digits", "regex": "[0-9]{4,}", "action": "partial", "keep": 2}]}),
    );
    let mut v = json!({"a": "abcdefghij@x.co", "b": "n 12345678", "c": 4111111111111111u64});
    m.mask_message(&mut v);
    assert_eq!(v["a"], "***************");
    assert_eq!(v["b"], "n ******78");
    assert_eq!(v["c"], 4111111111111111u64);
    assert!(m.mask_message(&mut v).is_empty());
}

#[test]
fn the_design_example_section_parses_and_works() {
    let m = masker(json!({
        "fields": ["password", "secret", "token", "api_key", "authorization"],
        "paths": ["/params/arguments/ssn"],
        "detectors": ["email", "credit_card", "us_ssn", "jwt", "aws_access_key", "private_key", "bearer_token"],
        "patterns": [{ "name": "employee_id", "regex": "EMP-[0-9]{6}" }],
        "replacement": "[REDACTED]",
        "responses": true
    }));
    assert!(m.responses && !m.requests);
    let mut msg = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "query_db", "arguments": {"sql": "select 1", "Password": "hunter2", "ssn": "123-45-6789",
        "note": "for EMP-004211, mail bob@example.com"}}});
    let mut masked = m.mask_message(&mut msg);
    masked.sort();
    assert_eq!(
        masked,
        vec![
            "/params/arguments/Password",
            "/params/arguments/note",
            "/params/arguments/ssn"
        ]
    );
    assert_eq!(
        msg["params"]["arguments"],
        json!({"sql": "select 1", "Password": "[REDACTED]", "ssn": "[REDACTED]",
            "note": "for [REDACTED], mail [REDACTED]"})
    );
}
