# The mcptrail module as a "compat" Wasm image (a one-file image with /plugin.wasm), which
# Istio's WasmPlugin also pulls:
#   make build && docker build -t ghcr.io/example/mcptrail:0.1.0-compat . && docker push ...
# `make image` builds the spec-compliant Wasm OCI image (media type
# application/vnd.module.wasm.content.layer.v1+wasm) without any container engine.
FROM scratch
COPY target/wasm32-wasip1/release/mcptrail.wasm ./plugin.wasm
