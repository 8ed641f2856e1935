//! A recording fake of [`Host`] for glue tests without Envoy.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use crate::host::{Body, Headers, Host, HostError, Level, MetricKind};

#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: u64,
}

/// A local reply: status, headers, body.
pub type Reply = (u32, Vec<(String, String)>, Vec<u8>);

#[derive(Debug, Default)]
pub struct FakeHost {
    pub now: Cell<u64>,
    pub rand: Cell<u64>,
    pub logs: RefCell<Vec<(Level, String)>>,
    pub headers: RefCell<HashMap<(u8, String), String>>,
    pub bodies: RefCell<HashMap<u8, Vec<u8>>>,
    pub properties: RefCell<HashMap<String, Vec<u8>>>,
    pub responses: RefCell<Vec<Reply>>,
    pub calls: RefCell<Vec<Call>>,
    pub fail_calls: Cell<bool>,
    /// Body reads fail (as a host call that returns an error status).
    pub fail_body: Cell<bool>,
    /// The host has no randomness.
    pub no_random: Cell<bool>,
    pub tick_ms: Cell<u64>,
    /// Streams resumed (by effective context id; 0 when none was set).
    pub resumed: RefCell<Vec<u32>>,
    pub effective: Cell<u32>,
    /// Local replies by effective context id.
    pub replies_to: RefCell<Vec<u32>>,
    /// Bodies written back with `set_body`.
    pub rewritten: RefCell<Vec<Vec<u8>>>,
    /// Metrics by id: (name, value).
    pub metrics: RefCell<Vec<(String, i64)>>,
    pub metric_calls: Cell<u64>,
    /// Host calls made through the trait, by method: each one crosses the VM boundary in
    /// Envoy, so their number per request is a cost worth watching.
    pub host_calls: RefCell<std::collections::BTreeMap<&'static str, u64>>,
}

fn hkey(map: Headers) -> u8 {
    match map {
        Headers::Request => 0,
        Headers::Response => 1,
        Headers::CallResponse => 2,
    }
}

fn bkey(which: Body) -> u8 {
    match which {
        Body::Request => 0,
        Body::Response => 1,
        Body::CallResponse => 2,
        Body::PluginConfiguration => 3,
    }
}

impl FakeHost {
    fn count(&self, method: &'static str) {
        *self.host_calls.borrow_mut().entry(method).or_default() += 1;
    }

    /// Host calls so far, all methods together.
    pub fn host_call_total(&self) -> u64 {
        self.host_calls.borrow().values().sum()
    }

    pub fn set_header(&self, map: Headers, name: &str, value: &str) {
        self.headers
            .borrow_mut()
            .insert((hkey(map), name.to_string()), value.to_string());
    }

    pub fn clear_headers(&self, map: Headers) {
        self.headers
            .borrow_mut()
            .retain(|(m, _), _| *m != hkey(map));
    }

    pub fn set_body(&self, which: Body, data: &[u8]) {
        self.bodies.borrow_mut().insert(bkey(which), data.to_vec());
    }

    pub fn advance(&self, ms: u64) {
        self.now.set(self.now.get() + ms);
    }

    /// A metric's value by name.
    pub fn metric(&self, name: &str) -> Option<i64> {
        self.metrics
            .borrow()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }

    pub fn logged(&self, needle: &str) -> bool {
        self.logs.borrow().iter().any(|(_, m)| m.contains(needle))
    }
}

impl Host for FakeHost {
    fn now_ms(&self) -> u64 {
        self.count("now_ms");
        self.now.get()
    }

    fn random_u64(&self) -> Result<u64, HostError> {
        self.count("random_u64");
        if self.no_random.get() {
            return Err(HostError("no randomness".into()));
        }
        self.rand.set(self.rand.get() + 1);
        Ok(self.rand.get())
    }

    fn log(&self, level: Level, message: &str) {
        self.count("log");
        self.logs.borrow_mut().push((level, message.to_string()));
    }

    fn header(&self, map: Headers, name: &str) -> Option<String> {
        self.count("header");
        self.headers
            .borrow()
            .get(&(hkey(map), name.to_string()))
            .cloned()
    }

    fn headers(&self, map: Headers) -> Vec<(String, String)> {
        self.count("headers");
        let k = hkey(map);
        let mut v: Vec<(String, String)> = self
            .headers
            .borrow()
            .iter()
            .filter(|((m, _), _)| *m == k)
            .map(|((_, n), v)| (n.clone(), v.clone()))
            .collect();
        v.sort();
        v
    }

    fn body(&self, which: Body, start: usize, max: usize) -> Result<Vec<u8>, HostError> {
        self.count("body");
        if self.fail_body.get() {
            return Err(HostError("NotFound".into()));
        }
        let b = self.bodies.borrow();
        let Some(data) = b.get(&bkey(which)) else {
            return Ok(Vec::new());
        };
        let end = start.saturating_add(max).min(data.len());
        Ok(data.get(start..end).map(<[u8]>::to_vec).unwrap_or_default())
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.count("property");
        self.properties.borrow().get(&path.join(".")).cloned()
    }

    fn send_response(
        &self,
        status: u32,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostError> {
        self.count("send_response");
        self.replies_to.borrow_mut().push(self.effective.get());
        self.responses.borrow_mut().push((
            status,
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body.to_vec(),
        ));
        Ok(())
    }

    fn http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u32, HostError> {
        self.count("http_call");
        if self.fail_calls.get() {
            return Err(HostError("BadArgument".into()));
        }
        let mut calls = self.calls.borrow_mut();
        calls.push(Call {
            cluster: cluster.to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.to_vec(),
            timeout_ms,
        });
        Ok(calls.len() as u32)
    }

    fn set_tick_period_ms(&self, ms: u64) -> Result<(), HostError> {
        self.count("set_tick_period_ms");
        self.tick_ms.set(ms);
        Ok(())
    }

    fn define_metric(&self, _kind: MetricKind, name: &str) -> Result<u32, HostError> {
        self.count("define_metric");
        let mut m = self.metrics.borrow_mut();
        if let Some(i) = m.iter().position(|(n, _)| n == name) {
            return Ok(i as u32);
        }
        m.push((name.to_string(), 0));
        Ok(m.len() as u32 - 1)
    }

    fn increment_metric(&self, id: u32, delta: i64) -> Result<(), HostError> {
        self.count("increment_metric");
        self.metric_calls.set(self.metric_calls.get() + 1);
        let mut m = self.metrics.borrow_mut();
        let slot = m
            .get_mut(id as usize)
            .ok_or_else(|| HostError("NotFound".into()))?;
        slot.1 += delta;
        Ok(())
    }

    fn memory_bytes(&self) -> u64 {
        self.count("memory_bytes");
        1 << 20
    }

    fn set_header(&self, map: Headers, name: &str, value: Option<&str>) {
        self.count("set_header");
        let key = (hkey(map), name.to_string());
        match value {
            Some(v) => {
                self.headers.borrow_mut().insert(key, v.to_string());
            }
            None => {
                self.headers.borrow_mut().remove(&key);
            }
        }
    }

    fn set_body(&self, which: Body, data: &[u8]) -> Result<(), HostError> {
        self.count("set_body");
        self.rewritten.borrow_mut().push(data.to_vec());
        self.bodies.borrow_mut().insert(bkey(which), data.to_vec());
        Ok(())
    }

    fn resume_request(&self) -> Result<(), HostError> {
        self.count("resume_request");
        self.resumed.borrow_mut().push(self.effective.get());
        Ok(())
    }

    fn set_effective_context(&self, context_id: u32) -> Result<(), HostError> {
        self.count("set_effective_context");
        self.effective.set(context_id);
        Ok(())
    }
}

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
    pub fn exchange(&self, root: &super::Root, ex: &Exchange<'_>) -> Done {
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
    pub fn forwards(&self, root: &super::Root, body: &[u8], cut: usize) -> bool {
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

    /// The records of each call, in order.
    fn records_by_call(&self) -> Vec<Vec<serde_json::Value>> {
        self.calls
            .borrow()
            .iter()
            .map(|c| {
                String::from_utf8_lossy(&c.body)
                    .lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect()
            })
            .collect()
    }

    /// Every record shipped so far, in order.
    pub fn shipped(&self) -> Vec<serde_json::Value> {
        self.records_by_call().into_iter().flatten().collect()
    }

    /// Lets the root's flush come, acknowledges the batch, and returns what it shipped.
    pub fn flush(&self, root: &mut super::Root) -> Vec<serde_json::Value> {
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
