#!/usr/bin/env python3
"""Builds the mcptrail Wasm OCI image without a container engine (`make image`).

Writes an OCI image layout (https://github.com/opencontainers/image-spec, image-layout.md)
holding one image in the Wasm OCI image format that Istio's WasmPlugin pulls:
  - manifest  application/vnd.oci.image.manifest.v1+json
  - config    application/vnd.module.wasm.config.v1+json
  - one layer application/vnd.module.wasm.content.layer.v1+wasm: the module itself
and a tar of the layout (an `oci-archive`). The same module always gives the same digests.

  scripts/oci-image.py [--wasm FILE] [--out DIR] [--name NAME] [--tag TAG]

Push with e.g. `oras cp --from-oci-layout DIR/NAME:TAG REGISTRY/REPO:TAG` or
`skopeo copy oci:DIR/NAME:TAG docker://REGISTRY/REPO:TAG` (see README).
"""
import argparse
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
WASM_CONFIG = "application/vnd.module.wasm.config.v1+json"
WASM_LAYER = "application/vnd.module.wasm.content.layer.v1+wasm"


def compact(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def workspace_version(root):
    try:
        with open(os.path.join(root, "Cargo.toml")) as f:
            in_pkg = False
            for line in f:
                line = line.strip()
                if line.startswith("["):
                    in_pkg = line == "[workspace.package]"
                elif in_pkg and line.startswith("version"):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "latest"


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wasm", default=os.path.join(root, "target/wasm32-wasip1/release/mcptrail.wasm"))
    ap.add_argument("--out", default=os.path.join(root, "target/oci"))
    ap.add_argument("--name", default="mcptrail")
    ap.add_argument("--tag", default=workspace_version(root))
    args = ap.parse_args()

    try:
        with open(args.wasm, "rb") as f:
            module = f.read()
    except OSError as e:
        sys.exit(f"oci-image: cannot read the module ({e}); run `make build` first")
    if module[:4] != b"\0asm":
        sys.exit(f"oci-image: {args.wasm} is not a Wasm module")

    layout = os.path.join(args.out, args.name)
    shutil.rmtree(layout, ignore_errors=True)  # one image per layout, no stale blobs
    blobs = os.path.join(layout, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)
    written = {}

    def blob(data):
        digest = hashlib.sha256(data).hexdigest()
        path = os.path.join(blobs, digest)
        with open(path, "wb") as f:
            f.write(data)
        written[digest] = data
        return {"digest": "sha256:" + digest, "size": len(data)}

    config = compact({
        "created": "1970-01-01T00:00:00Z",
        "author": "mcptrail",
        "platform": {"os": "wasip1", "architecture": "wasm32"},
    })
    config_desc = {"mediaType": WASM_CONFIG, **blob(config)}
    layer_desc = {
        "mediaType": WASM_LAYER,
        **blob(module),
        "annotations": {"org.opencontainers.image.title": "plugin.wasm"},
    }
    manifest = compact({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": config_desc,
        "layers": [layer_desc],
        "annotations": {
            "org.opencontainers.image.title": "mcptrail",
            "org.opencontainers.image.description": "mcptrail proxy-wasm filter for Envoy (MCP audit, auth, policy)",
            "org.opencontainers.image.version": args.tag,
            "org.opencontainers.image.licenses": "Apache-2.0",
        },
    })
    manifest_desc = {"mediaType": MANIFEST, **blob(manifest)}
    manifests = [{**manifest_desc, "annotations": {"org.opencontainers.image.ref.name": args.tag}}]
    index = compact({"schemaVersion": 2, "mediaType": INDEX, "manifests": manifests})
    with open(os.path.join(layout, "index.json"), "wb") as f:
        f.write(index)
    with open(os.path.join(layout, "oci-layout"), "wb") as f:
        f.write(compact({"imageLayoutVersion": "1.0.0"}))

    # The same layout as one tar (`oci-archive:`), with fixed metadata so it is reproducible.
    archive = os.path.join(args.out, f"{args.name}-{args.tag}.oci.tar")
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
        add("oci-layout", compact({"imageLayoutVersion": "1.0.0"}))
        add("index.json", index)
        for digest in sorted(written):
            add(f"blobs/sha256/{digest}", written[digest])

    module_sha = hashlib.sha256(module).hexdigest()
    print(f"image:    {layout}:{args.tag}  (OCI layout; archive {archive})")
    print(f"manifest: {manifest_desc['digest']}  ({len(manifest)} bytes)")
    print(f"module:   {len(module)} bytes, sha256 {module_sha}")
    print(f"WasmPlugin oci:// url, pinned:  sha256: {manifest_desc['digest'][7:]}")
    print(f"WasmPlugin https url / EnvoyFilter remote:  sha256: {module_sha}")


if __name__ == "__main__":
    main()
