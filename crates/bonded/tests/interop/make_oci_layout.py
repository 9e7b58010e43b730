#!/usr/bin/env python3
"""Builds a deterministic OCI image layout for bonded's skopeo interop tests.

    make_oci_layout.py OUT_DIR [--tag v1] [--platforms amd64,arm64]

Without --platforms: one image (config + 4 gzip'd tar layers: ~200 B, ~150 KiB,
~4 MiB incompressible, and an empty tar), tagged TAG in OUT_DIR/index.json.
With --platforms: one image per platform (the big layer shared, the others
per-platform) and an OCI image index over them, tagged TAG.

Prints a JSON summary on stdout:
  {"ref": TAG, "top": {"digest","size","mediaType"},
   "images": [{"digest","size","config","layers":[...],"platform"}],
   "blobs": {digest: size}}          # every blob written (manifests included)
Same arguments -> byte-identical output.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
MTIME = 1700000000


def prng(seed: str, n: int) -> bytes:
    """Deterministic incompressible bytes (sha256 in counter mode)."""
    out = bytearray()
    key = seed.encode()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(key + i.to_bytes(8, "big")).digest()
        i += 1
    return bytes(out[:n])


def make_tar(files) -> bytes:
    """files: list of (path, bytes) -> deterministic uncompressed tar."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        dirs = set()
        for path, _ in files:
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        for d in sorted(dirs):
            ti = tarfile.TarInfo(d)
            ti.type = tarfile.DIRTYPE
            ti.mode = 0o755
            ti.mtime = MTIME
            tf.addfile(ti)
        for path, data in files:
            ti = tarfile.TarInfo(path)
            ti.size = len(data)
            ti.mode = 0o644
            ti.mtime = MTIME
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def canon(obj) -> bytes:
    return json.dumps(obj, indent=2, sort_keys=False).encode()


class Layout:
    def __init__(self, root):
        self.root = root
        self.blobs = {}
        os.makedirs(os.path.join(root, "blobs", "sha256"), exist_ok=True)

    def put(self, data: bytes) -> dict:
        hexd = hashlib.sha256(data).hexdigest()
        path = os.path.join(self.root, "blobs", "sha256", hexd)
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(data)
        digest = "sha256:" + hexd
        self.blobs[digest] = len(data)
        return {"digest": digest, "size": len(data)}


def build_image(lay: Layout, arch: str, shared_big: tuple):
    """Returns (manifest descriptor, summary)."""
    tars = [
        make_tar([("etc/interop/hello.txt", f"hello from bonded interop ({arch})\n".encode() * 16)]),
        make_tar(
            [
                (f"usr/share/interop/{arch}/words-{i}.txt", prng(f"{arch}-mid-{i}", 16 * 1024).hex().encode())
                for i in range(8)
            ]
        ),
        shared_big[0],
        make_tar([]),
    ]
    layers, diff_ids, history = [], [], []
    for n, tar in enumerate(tars):
        gz = shared_big[1] if tar is shared_big[0] else gzip.compress(tar, compresslevel=6, mtime=0)
        d = lay.put(gz)
        layers.append({"mediaType": OCI_LAYER_GZ, **d})
        diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
        history.append({"created": "2023-11-14T22:13:20Z", "created_by": f"interop layer {n}"})
    config = {
        "created": "2023-11-14T22:13:20Z",
        "architecture": arch,
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
            "Labels": {"org.example.interop": "bonded"},
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    }
    cfg = lay.put(canon(config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, **cfg},
        "layers": layers,
        "annotations": {"org.opencontainers.image.description": f"bonded interop image ({arch})"},
    }
    md = lay.put(canon(manifest))
    desc = {"mediaType": OCI_MANIFEST, **md}
    summary = {
        **md,
        "config": cfg["digest"],
        "layers": [l["digest"] for l in layers],
        "platform": {"architecture": arch, "os": "linux"},
    }
    return desc, summary


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--tag", default="v1")
    ap.add_argument("--platforms", default="")
    args = ap.parse_args()

    lay = Layout(args.out)
    big_tar = make_tar([("opt/interop/big.bin", prng("big", 4 * 1024 * 1024 + 12345))])
    shared_big = (big_tar, gzip.compress(big_tar, compresslevel=1, mtime=0))

    platforms = [p for p in args.platforms.split(",") if p]
    images = []
    if not platforms:
        desc, summary = build_image(lay, "amd64", shared_big)
        images.append(summary)
        top = desc
    else:
        entries = []
        for arch in platforms:
            desc, summary = build_image(lay, arch, shared_big)
            images.append(summary)
            entries.append({**desc, "platform": summary["platform"]})
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
        top = {"mediaType": OCI_INDEX, **lay.put(canon(index))}

    with open(os.path.join(args.out, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion": "1.0.0"}')
    root_index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{**top, "annotations": {"org.opencontainers.image.ref.name": args.tag}}],
    }
    with open(os.path.join(args.out, "index.json"), "wb") as f:
        f.write(canon(root_index))

    json.dump({"ref": args.tag, "top": top, "images": images, "blobs": lay.blobs}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
