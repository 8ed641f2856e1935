//! Binds the glue to the proxy-wasm SDK. Only `Result`-returning host calls are used.

use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{
    Action as PwAction, BufferType, ContextType, LogLevel, MapType, MetricType,
};

use crate::filter::{Root, Stream};
use crate::host::{Action, Body, Headers, Host, HostError, Level, MetricKind};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        let mut root = ProxyRoot::default();
        root.root.context_id = context_id;
        Box::new(root)
    });
}}

/// The host as proxy-wasm exposes it.
struct ProxyHost;

fn map(m: Headers) -> MapType {
    match m {
        Headers::Request => MapType::HttpRequestHeaders,
        Headers::Response => MapType::HttpResponseHeaders,
        Headers::CallResponse => MapType::HttpCallResponseHeaders,
    }
}

fn buffer(b: Body) -> BufferType {
    match b {
        Body::Request => BufferType::HttpRequestBody,
        Body::Response => BufferType::HttpResponseBody,
        Body::CallResponse => BufferType::HttpCallResponseBody,
        Body::PluginConfiguration => BufferType::PluginConfiguration,
    }
}

impl Host for ProxyHost {
    fn now_ms(&self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as u64)
    }

    fn random_u64(&self) -> Result<u64, HostError> {
        let mut b = [0u8; 8];
        // No fallback to the clock: predictable cache keys and ids are worse than no VM.
        getrandom::fill(&mut b).map_err(|e| HostError(format!("no randomness: {e}")))?;
        Ok(u64::from_le_bytes(b))
    }

    fn log(&self, level: Level, message: &str) {
        let level = match level {
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        let _ = hostcalls::log(level, message);
    }

    fn header(&self, m: Headers, name: &str) -> Option<String> {
        hostcalls::get_map_value(map(m), name).ok().flatten()
    }

    fn headers(&self, m: Headers) -> Vec<(String, String)> {
        hostcalls::get_map(map(m)).unwrap_or_default()
    }

    fn body(&self, which: Body, start: usize, max: usize) -> Result<Vec<u8>, HostError> {
        hostcalls::get_buffer(buffer(which), start, max)
            .map(Option::unwrap_or_default)
            .map_err(|s| HostError(format!("{s:?}")))
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        hostcalls::get_property(path.to_vec()).ok().flatten()
    }

    fn send_response(
        &self,
        status: u32,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostError> {
        hostcalls::send_http_response(status, headers.to_vec(), Some(body))
            .map_err(|s| HostError(format!("{s:?}")))
    }

    fn http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u32, HostError> {
        hostcalls::dispatch_http_call(
            cluster,
            headers.to_vec(),
            Some(body),
            vec![],
            Duration::from_millis(timeout_ms),
        )
        .map_err(|s| HostError(format!("{s:?}")))
    }

    fn set_header(&self, m: Headers, name: &str, value: Option<&str>) {
        let _ = hostcalls::set_map_value(map(m), name, value);
    }

    fn set_body(&self, which: Body, data: &[u8]) -> Result<(), HostError> {
        hostcalls::set_buffer(buffer(which), 0, usize::MAX, data)
            .map_err(|s| HostError(format!("{s:?}")))
    }

    fn resume_request(&self) -> Result<(), HostError> {
        hostcalls::resume_http_request().map_err(|s| HostError(format!("{s:?}")))
    }

    fn set_effective_context(&self, context_id: u32) -> Result<(), HostError> {
        hostcalls::set_effective_context(context_id).map_err(|s| HostError(format!("{s:?}")))
    }

    fn set_tick_period_ms(&self, ms: u64) -> Result<(), HostError> {
        hostcalls::set_tick_period(Duration::from_millis(ms))
            .map_err(|s| HostError(format!("{s:?}")))
    }

    fn done(&self) -> Result<(), HostError> {
        hostcalls::done().map_err(|s| HostError(format!("{s:?}")))
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<u32, HostError> {
        let t = match kind {
            MetricKind::Counter => MetricType::Counter,
            MetricKind::Gauge => MetricType::Gauge,
        };
        hostcalls::define_metric(t, name).map_err(|s| HostError(format!("{s:?}")))
    }

    fn increment_metric(&self, id: u32, delta: i64) -> Result<(), HostError> {
        hostcalls::increment_metric(id, delta).map_err(|s| HostError(format!("{s:?}")))
    }

    fn memory_bytes(&self) -> u64 {
        (core::arch::wasm32::memory_size(0) as u64).saturating_mul(65536)
    }

    fn shared_get(&self, key: &str) -> Result<(Option<Vec<u8>>, u32), HostError> {
        hostcalls::get_shared_data(key)
            .map(|(v, cas)| (v, cas.unwrap_or(0)))
            .map_err(|s| HostError(format!("{s:?}")))
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: u32) -> Result<bool, HostError> {
        match hostcalls::set_shared_data(key, Some(value), (cas != 0).then_some(cas)) {
            Ok(()) => Ok(true),
            Err(proxy_wasm::types::Status::CasMismatch) => Ok(false),
            Err(s) => Err(HostError(format!("{s:?}"))),
        }
    }
}

#[derive(Default)]
struct ProxyRoot {
    root: Root,
}

impl Context for ProxyRoot {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        self.root
            .on_http_call_response(&ProxyHost, token_id, num_headers, body_size);
    }

    /// The VM is going away (configuration push, Envoy stopping): `false` while records are
    /// still held; the root calls `proxy_done` once they are shipped or the time is up.
    fn on_done(&mut self) -> bool {
        self.root.on_done(&ProxyHost)
    }
}

impl RootContext for ProxyRoot {
    fn on_configure(&mut self, size: usize) -> bool {
        let bytes = ProxyHost
            .body(Body::PluginConfiguration, 0, size)
            .unwrap_or_default();
        self.root.configure(&ProxyHost, &bytes)
    }

    fn on_tick(&mut self) {
        self.root.on_tick(&ProxyHost);
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Before a successful configuration there is nothing to do: pass traffic through.
        let stream = self.root.new_stream(context_id);
        Some(Box::new(ProxyStream { stream }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct ProxyStream {
    stream: Option<Stream>,
}

fn action(a: Action) -> PwAction {
    match a {
        Action::Continue => PwAction::Continue,
        Action::Pause => PwAction::Pause,
    }
}

impl Context for ProxyStream {
    /// A callout this stream sent (an approval check) answered.
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        if let Some(s) = self.stream.as_mut() {
            s.on_http_call_response(&ProxyHost, token_id, num_headers, body_size);
        }
    }
}

impl HttpContext for ProxyStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> PwAction {
        self.stream.as_mut().map_or(PwAction::Continue, |s| {
            action(s.on_request_headers(&ProxyHost, end_of_stream))
        })
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> PwAction {
        self.stream.as_mut().map_or(PwAction::Continue, |s| {
            action(s.on_request_body(&ProxyHost, body_size, end_of_stream))
        })
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> PwAction {
        self.stream.as_mut().map_or(PwAction::Continue, |s| {
            action(s.on_request_trailers(&ProxyHost))
        })
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> PwAction {
        self.stream.as_mut().map_or(PwAction::Continue, |s| {
            action(s.on_response_headers(&ProxyHost, end_of_stream))
        })
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> PwAction {
        self.stream.as_mut().map_or(PwAction::Continue, |s| {
            action(s.on_response_body(&ProxyHost, body_size, end_of_stream))
        })
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> PwAction {
        self.stream.as_mut().map_or(PwAction::Continue, |s| {
            action(s.on_response_trailers(&ProxyHost))
        })
    }

    fn on_log(&mut self) {
        if let Some(s) = self.stream.as_mut() {
            s.on_log(&ProxyHost);
        }
    }
}
