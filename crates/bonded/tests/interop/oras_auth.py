"""oras-py against an auth-enabled bonded: log in, push and pull an artifact through the bearer
token flow. (Wrong credentials are tested with skopeo and raw HTTP: oras-py retries a refused push
with back-off for minutes.)

Usage: oras_auth.py REGISTRY REPO USERNAME PASSWORD WORKDIR
Prints "ok" and exits 0 when every check passed; exits 1 with a message otherwise.
"""
import os
import sys

import oras.client


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    registry, repo, user, password, work = sys.argv[1:6]
    os.chdir(work)
    payload = b"model weights behind access control\n" * 100
    with open("model.bin", "wb") as f:
        f.write(payload)
    target = f"{registry}/{repo}:v1"
    cfg = os.path.join(work, "docker-config.json")

    client = oras.client.OrasClient(hostname=registry, insecure=True)
    client.login(username=user, password=password, hostname=registry, config_path=cfg)
    resp = client.push(target=target, files=["model.bin"])
    if resp.status_code not in (200, 201):
        fail(f"push answered {resp.status_code}: {resp.text}")
    os.makedirs("out", exist_ok=True)
    files = client.pull(target=target, outdir="out")
    got = open(os.path.join("out", "model.bin"), "rb").read()
    if got != payload:
        fail(f"pulled bytes differ from pushed ones ({files})")

    print("ok")


if __name__ == "__main__":
    main()
