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
    /// Process-wide shared data: the roots of one test are the workers of one process.
    pub shared: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    pub shared_version: Cell<u32>,
    /// `proxy_done` was called.
    pub done: Cell<bool>,
}

fn hkey(map: Headers) -> u8 {
    match map {
        Headers::Request => 0,
        Headers::Response => 1,
        Headers::CallResponse => 2,
    }
}

pub(crate) fn bkey(which: Body) -> u8 {
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

    fn done(&self) -> Result<(), HostError> {
        self.count("done");
        self.done.set(true);
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

    fn shared_get(&self, key: &str) -> Result<(Option<Vec<u8>>, u32), HostError> {
        self.count("shared_get");
        Ok(match self.shared.borrow().get(key) {
            Some((v, cas)) => (Some(v.clone()), *cas),
            None => (None, 0),
        })
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: u32) -> Result<bool, HostError> {
        self.count("shared_set");
        let mut map = self.shared.borrow_mut();
        if let Some((_, current)) = map.get(key) {
            if cas != 0 && cas != *current {
                return Ok(false);
            }
        }
        // Envoy's versions come from one process-wide counter.
        self.shared_version.set(self.shared_version.get() + 1);
        map.insert(key.to_string(), (value.to_vec(), self.shared_version.get()));
        Ok(true)
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
