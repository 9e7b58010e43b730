#!/usr/bin/env bash
# Installs the third-party clients that bonded's interop tests drive
# (crates/bonded/tests/interop.rs), only when they are missing:
#   - skopeo            (Debian package)
#   - sqlite3           (Debian package; the audit tamper test edits rows behind bonded's back)
#   - prometheus        (Debian package; tests/promotion.rs reads canary metrics from it)
#   - podman, buildah   (Debian packages; tests/podman.rs)
#   - python3 + oras    (the oras-py SDK from PyPI, for the `python3` on PATH;
#                        pulls in `requests`, which the interop script also uses)
#   - securesystemslib, in-toto, cyclonedx-bom (PyPI; tests/supply.rs)
#   - packaging (PyPI; the PEP 440 reference test, crates/vuln/tests/pep440_reference.rs)
# Idempotent and non-interactive; a fast no-op when everything is present.
# Runs as root on Debian. Exits non-zero with a message on failure.
set -euo pipefail

log() { echo "install-test-tools: $*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

export DEBIAN_FRONTEND=noninteractive
apt_updated=0

apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install manually: $*"
    if [ "$(id -u)" -ne 0 ]; then
        die "need root to apt-get install: $* (re-run this script as root)"
    fi
    if [ "$apt_updated" -eq 0 ]; then
        log "apt-get update"
        apt-get update -qq || die "apt-get update failed"
        apt_updated=1
    fi
    log "apt-get install $*"
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null ||
        die "apt-get install $* failed"
}

# --- skopeo -----------------------------------------------------------------
if ! command -v skopeo >/dev/null 2>&1; then
    apt_install skopeo
    command -v skopeo >/dev/null 2>&1 || die "skopeo still not on PATH after install"
fi
# --- prometheus (Debian package; the canary test scrapes bonded with it) ----------
if ! command -v prometheus >/dev/null 2>&1 && [ ! -x /usr/bin/prometheus ]; then
    apt_install prometheus
    [ -x /usr/bin/prometheus ] || die "prometheus still not installed"
fi
# --- podman and buildah (Debian packages; tests/podman.rs, daemonless, vfs storage) -------
if ! command -v podman >/dev/null 2>&1 || ! command -v buildah >/dev/null 2>&1; then
    apt_install podman buildah
    command -v podman >/dev/null 2>&1 && command -v buildah >/dev/null 2>&1 ||
        die "podman/buildah still not on PATH after install"
fi
# --- sqlite3 ----------------------------------------------------------------
if ! command -v sqlite3 >/dev/null 2>&1; then
    apt_install sqlite3
fi
# skopeo refuses to run without a signature policy; the Debian package
# (containers-common) ships one, but make sure.
if [ ! -f /etc/containers/policy.json ] && [ "$(id -u)" -eq 0 ]; then
    mkdir -p /etc/containers
    cat >/etc/containers/policy.json <<'EOF'
{
    "default": [
        {
            "type": "insecureAcceptAnything"
        }
    ]
}
EOF
fi

# --- python3 ----------------------------------------------------------------
if ! command -v python3 >/dev/null 2>&1; then
    apt_install python3 python3-pip
fi
command -v python3 >/dev/null 2>&1 || die "python3 not on PATH"

# --- oras-py SDK (+ requests) for that python3 ---------------------------------
have_oras() {
    python3 - <<'EOF' >/dev/null 2>&1
import requests
import oras.client, oras.oci, oras.provider
assert hasattr(oras.oci, "Subject")
import inspect
assert "subject" in inspect.signature(oras.provider.Registry.push).parameters
EOF
}

if ! have_oras; then
    if ! python3 -m pip --version >/dev/null 2>&1; then
        python3 -m ensurepip --upgrade >/dev/null 2>&1 || apt_install python3-pip
    fi
    python3 -m pip --version >/dev/null 2>&1 || die "pip is not available for $(command -v python3)"
    log "pip install oras (for $(command -v python3))"
    pip_args=(install --quiet --disable-pip-version-check --no-input --upgrade oras)
    if ! python3 -m pip "${pip_args[@]}"; then
        # Debian's system python is "externally managed" (PEP 668).
        python3 -m pip "${pip_args[@]}" --break-system-packages ||
            die "pip install oras failed"
    fi
    # pyenv shims need a rehash to see new entry points (harmless otherwise).
    command -v pyenv >/dev/null 2>&1 && pyenv rehash >/dev/null 2>&1 || true
    have_oras || die "python3 cannot import the oras SDK (with push(subject=...)) after pip install"
fi

# --- securesystemslib + in-toto (verify bonded's DSSE signatures with public tooling) and
# cyclonedx-bom (reference SBOMs), for that python3 --------------------------------------------
have_supply_tools() {
    python3 - <<'EOF' >/dev/null 2>&1
import securesystemslib.dsse, securesystemslib.signer, cryptography
import in_toto.models.metadata
import cyclonedx_py
EOF
}

if ! have_supply_tools; then
    log "pip install securesystemslib in-toto cryptography cyclonedx-bom (for $(command -v python3))"
    pip_args=(install --quiet --disable-pip-version-check --no-input securesystemslib in-toto cryptography cyclonedx-bom)
    if ! python3 -m pip "${pip_args[@]}"; then
        python3 -m pip "${pip_args[@]}" --break-system-packages ||
            die "pip install securesystemslib in-toto cryptography cyclonedx-bom failed"
    fi
    command -v pyenv >/dev/null 2>&1 && pyenv rehash >/dev/null 2>&1 || true
    have_supply_tools || die "python3 cannot import securesystemslib/in-toto/cyclonedx_py after pip install"
fi

# --- packaging (PEP 440 reference ordering for crates/vuln's tests), for that python3 ----------
if ! python3 -c 'import packaging.version' >/dev/null 2>&1; then
    log "pip install packaging (for $(command -v python3))"
    pip_args=(install --quiet --disable-pip-version-check --no-input packaging)
    if ! python3 -m pip "${pip_args[@]}"; then
        python3 -m pip "${pip_args[@]}" --break-system-packages ||
            die "pip install packaging failed"
    fi
    python3 -c 'import packaging.version' >/dev/null 2>&1 ||
        die "python3 cannot import packaging.version after pip install"
fi

exit 0
