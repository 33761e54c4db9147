#!/usr/bin/env bash
# Create .venv and install Kilonova with its test dependencies (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# libvirt-python (the libvirt driver's extra) builds against libvirt-dev: install it where apt can.
if [ ! -e /usr/include/libvirt/libvirt.h ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        libvirt-dev pkg-config gcc; } >/dev/null || echo "bootstrap: could not install libvirt-dev" >&2
fi
# noVNC's HTML/JS client, which the novncproxy service serves ([vnc] novnc_web = /usr/share/novnc).
if [ ! -e /usr/share/novnc/vnc_lite.html ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        novnc; } >/dev/null || echo "bootstrap: could not install novnc (console pages will be missing)" >&2
fi
# nftables: the libvirt dataplane's routers NAT with it (kilonova serve l3), and security groups filter with it;
# conntrack: a floating IP taken off a router has its connections' state dropped with it;
# arping: a router announces the addresses it takes on (gratuitous ARP), as Neutron's L3 agent does.
if { [ ! -x /usr/sbin/nft ] || [ ! -x /usr/sbin/conntrack ] || [ ! -x /usr/bin/arping ]; } \
        && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        nftables conntrack iputils-arping; } >/dev/null || echo "bootstrap: could not install nftables, conntrack and arping (routers will not NAT or announce addresses, security groups not enforced)" >&2
fi
# lvm2 and thin-provisioning-tools: the volume service's LVM thin backend ([volume] backend = lvm) and its test.
if [ ! -x /usr/sbin/lvm ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        lvm2 thin-provisioning-tools; } >/dev/null || echo "bootstrap: could not install lvm2 (no LVM volume backend)" >&2
fi
# PostgreSQL's default of 100 connections is too few for the tests: two xdist workers each run a distributed
# deployment (a dozen services, each with its own pool, reconnecting after a fault), and "too many clients"
# then fails a start or a query at random. Raise it on the machine's own server (a restart, only when needed).
if command -v psql >/dev/null && command -v pg_ctlcluster >/dev/null && [ "$(id -u)" = 0 ]; then
    connections=$(psql -h 127.0.0.1 -U postgres -d postgres -Atc "SHOW max_connections" 2>/dev/null || true)
    if [ -n "$connections" ] && [ "$connections" -lt 500 ]; then
        { psql -h 127.0.0.1 -U postgres -d postgres -qc "ALTER SYSTEM SET max_connections = 500" \
            && pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main restart; } \
            >/dev/null || echo "bootstrap: could not raise PostgreSQL's max_connections" >&2
    fi
fi
# MariaDB's default (151) likewise; its limit changes without a restart (and is set again on every bootstrap).
if command -v mysql >/dev/null; then
    mysql -h 127.0.0.1 -u root -e "SET GLOBAL max_connections = GREATEST(@@max_connections, 500)" 2>/dev/null \
        || echo "bootstrap: could not raise MariaDB's max_connections" >&2
fi
if [ -e /usr/include/libvirt/libvirt.h ] && .venv/bin/python -m pip install --quiet -e '.[test,libvirt]'; then
    :
else
    .venv/bin/python -m pip install --quiet -e '.[test]'
fi
# Byte-compile Kilonova's own modules (an editable install has none, and PYTHONDONTWRITEBYTECODE
# machines never write them): every start of a service would otherwise compile ~230 modules again.
.venv/bin/python -m compileall -q -j 0 kilonova >/dev/null || true
