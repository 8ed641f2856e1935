//! One request and its answer driven through a stream over the recording host, the way Envoy
//! calls the filter; and what was shipped, read back.

use crate::host::fake::{bkey, FakeHost};
use crate::host::{Body, Headers};

/// How an answer ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The last chunk carries the end of stream.
    Body,
    /// HTTP/2 trailers end it.
    Trailers,
    /// The connection goes away: no end of stream.
    Cut,
}

/// One request and its answer, driven through a stream the way Envoy calls it.
#[derive(Debug, Clone)]
pub struct Exchange<'a> {
    pub method: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a str,
    pub status: &'a str,
    pub response_headers: &'a [(&'a str, &'a str)],
    /// The answer, as its body callbacks receive it.
    pub chunks: &'a [&'a [u8]],
    pub end: End,
}

impl Default for Exchange<'_> {
    fn default() -> Self {
        Self {
            method: "POST",
            headers: &[],
            body: "",
            status: "200",
            response_headers: &[("content-type", "application/json")],
            chunks: &[],
            end: End::Body,
        }
    }
}

/// What came of an exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    /// The stream's answer to the request's last callback.
    pub request: crate::host::Action,
    /// The filter answered itself; the upstream was never asked.
    pub answered_locally: bool,
    /// The answer's bytes as the client received them.
    pub client_saw: Vec<u8>,
}

impl FakeHost {
    /// Runs `ex` through a new stream of `root`. After a `Pause` in a body callback the next
    /// callback sees everything buffered so far, as in Envoy.
    pub fn exchange(&self, root: &crate::filter::Root, ex: &Exchange<'_>) -> Done {
        use crate::host::Action;
        self.clear_headers(Headers::Request);
        self.clear_headers(Headers::Response);
        self.set_header(Headers::Request, ":path", "/mcp");
        self.set_header(Headers::Request, ":method", ex.method);
        for (k, v) in ex.headers {
            self.set_header(Headers::Request, k, v);
        }
        let replies_before = self.responses.borrow().len();
        let Some(mut s) = root.new_stream(1) else {
            return Done {
                request: Action::Continue,
                answered_locally: false,
                client_saw: Vec::new(),
            };
        };
        let mut request = s.on_request_headers(self, ex.body.is_empty());
        if !ex.body.is_empty() {
            self.set_body(Body::Request, ex.body.as_bytes());
            request = s.on_request_body(self, ex.body.len(), true);
        }
        if self.responses.borrow().len() > replies_before {
            s.on_log(self);
            return Done {
                request,
                answered_locally: true,
                client_saw: Vec::new(),
            };
        }
        self.set_header(Headers::Response, ":status", ex.status);
        for (k, v) in ex.response_headers {
            self.set_header(Headers::Response, k, v);
        }
        s.on_response_headers(self, ex.chunks.is_empty() && ex.end == End::Body);
        let mut client_saw = Vec::new();
        let mut buffered = Vec::new();
        for (i, c) in ex.chunks.iter().enumerate() {
            buffered.extend_from_slice(c);
            self.set_body(Body::Response, &buffered);
            let last = i + 1 == ex.chunks.len() && ex.end == End::Body;
            if s.on_response_body(self, buffered.len(), last) == Action::Continue {
                self.take_response(&mut client_saw);
                buffered.clear();
            }
        }
        if ex.end == End::Trailers {
            s.on_response_trailers(self);
            self.take_response(&mut client_saw);
        }
        s.on_log(self);
        Done {
            request,
            answered_locally: false,
            client_saw,
        }
    }

    /// Sends a POST of any bytes (not only text, as [`FakeHost::exchange`]) through a new
    /// stream of `root`, the body in two callbacks cut at `cut` (Envoy's buffering after a
    /// `Pause` modelled), and ends the stream with no answer. Returns whether the request was
    /// forwarded: its last request callback answered `Continue` and no local reply was sent.
    pub fn forwards(&self, root: &crate::filter::Root, body: &[u8], cut: usize) -> bool {
        use crate::host::Action;
        self.clear_headers(Headers::Request);
        self.set_header(Headers::Request, ":path", "/mcp");
        self.set_header(Headers::Request, ":method", "POST");
        self.set_header(Headers::Request, "content-type", "application/json");
        let replies = self.responses.borrow().len();
        let Some(mut s) = root.new_stream(1) else {
            return false;
        };
        let mut action = s.on_request_headers(self, body.is_empty());
        if action == Action::Continue && !body.is_empty() {
            let (a, b) = body.split_at(cut.min(body.len()));
            self.set_body(Body::Request, a);
            action = s.on_request_body(self, a.len(), false);
            // After a Pause the last callback sees all that is buffered; else only the rest.
            let last = if action == Action::Pause { body } else { b };
            self.set_body(Body::Request, last);
            action = s.on_request_body(self, last.len(), true);
        }
        s.on_log(self);
        action == Action::Continue && self.responses.borrow().len() == replies
    }

    /// Appends the response chunk the stream let through to what the client saw.
    fn take_response(&self, client_saw: &mut Vec<u8>) {
        if let Some(b) = self.bodies.borrow().get(&bkey(Body::Response)) {
            client_saw.extend_from_slice(b);
        }
    }

    /// The records of each call, in order (other callouts, approval checks, carry none).
    fn records_by_call(&self) -> Vec<Vec<serde_json::Value>> {
        self.calls
            .borrow()
            .iter()
            .map(|c| {
                String::from_utf8_lossy(&c.body)
                    .lines()
                    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .filter(|r| r.get("kind").is_some())
                    .collect()
            })
            .collect()
    }

    /// Every record shipped so far, in order.
    pub fn shipped(&self) -> Vec<serde_json::Value> {
        self.records_by_call().into_iter().flatten().collect()
    }

    /// Lets the root's flush come, acknowledges the batch, and returns what it shipped.
    pub fn flush(&self, root: &mut crate::filter::Root) -> Vec<serde_json::Value> {
        self.advance(10_000);
        let before = self.calls.borrow().len();
        root.on_tick(self);
        let calls = self.calls.borrow().len();
        if calls > before {
            self.set_header(Headers::CallResponse, ":status", "200");
            root.on_http_call_response(self, calls as u32, 1, 0);
        }
        self.records_by_call()
            .into_iter()
            .skip(before)
            .take(calls - before)
            .flatten()
            .collect()
    }
}
