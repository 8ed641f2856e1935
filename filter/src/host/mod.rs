//! The small surface through which the glue reaches its host (Envoy, or a fake in tests).
//!
//! Nothing here depends on `proxy-wasm`: the wasm build implements [`Host`] with the SDK's
//! `Result`-returning host calls, the tests with a recording fake.

/// Log levels, mirroring the host's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// Header maps the glue reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Headers {
    Request,
    Response,
    CallResponse,
}

/// Bodies the glue reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    Request,
    Response,
    CallResponse,
    PluginConfiguration,
}

/// What to tell the host after a stream callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
}

/// Metric kinds (Envoy stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
}

/// A host call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostError(pub String);

pub trait Host {
    /// Wall-clock time, Unix milliseconds.
    fn now_ms(&self) -> u64;
    /// Random bits for ids and cache keys (drawn when a VM is configured); an error when the
    /// host has no randomness to give.
    fn random_u64(&self) -> Result<u64, HostError>;
    fn log(&self, level: Level, message: &str);
    fn header(&self, map: Headers, name: &str) -> Option<String>;
    /// All headers of a map, in one host call.
    fn headers(&self, map: Headers) -> Vec<(String, String)>;
    /// Up to `max` bytes of a body from `start` (empty when there is none); an error when
    /// the host could not hand it over.
    fn body(&self, which: Body, start: usize, max: usize) -> Result<Vec<u8>, HostError>;
    /// An Envoy attribute such as `["source", "address"]`.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    fn send_response(
        &self,
        status: u32,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostError>;
    /// Dispatches an HTTP callout from the root context; returns its token.
    fn http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u32, HostError>;
    fn set_tick_period_ms(&self, ms: u64) -> Result<(), HostError>;
    /// Tells the host a root context that answered `false` to `on_done` is finished
    /// (`proxy_done`): the VM may go.
    fn done(&self) -> Result<(), HostError>;
    /// Sets (or with `None` removes) a header of the current stream.
    fn set_header(&self, map: Headers, name: &str, value: Option<&str>);
    /// Replaces the current chunk of a stream body.
    fn set_body(&self, which: Body, data: &[u8]) -> Result<(), HostError>;
    /// Resumes the current stream's paused request.
    fn resume_request(&self) -> Result<(), HostError>;
    /// Makes a stream current (from the root context), for the calls above.
    fn set_effective_context(&self, context_id: u32) -> Result<(), HostError>;
    /// Defines (or finds) a metric by name; returns its id.
    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<u32, HostError>;
    /// Adds `delta` to a counter or gauge.
    fn increment_metric(&self, id: u32, delta: i64) -> Result<(), HostError>;
    /// The VM's linear memory size in bytes (it only grows: this is its peak).
    fn memory_bytes(&self) -> u64;
    /// Data shared by the VMs of this Envoy process with the same `vm_id` (every worker; not
    /// other replicas): the value, and its version for [`Host::shared_set`] (0 when absent).
    fn shared_get(&self, key: &str) -> Result<(Option<Vec<u8>>, u32), HostError>;
    /// Stores `value` if the key is still at version `cas` (0: whatever it holds); `Ok(false)`
    /// when another VM changed it first.
    fn shared_set(&self, key: &str, value: &[u8], cas: u32) -> Result<bool, HostError>;
}

/// The proxy-wasm binding (the filter module only).
#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod proxy;

/// A recording fake of the host (tests, benches, fuzz targets).
#[cfg(any(test, feature = "testkit"))]
pub mod fake;
