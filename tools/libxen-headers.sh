#!/usr/bin/env bash
# Prints a directory that holds xen/io/xs_wire.h and the other headers of Debian's libxen-dev (the
# oracle of the ABI test for xen/io/*.h): /usr/include when libxen-dev is installed, else a copy
# unpacked from the libxen-dev package into ${XENSHARE_HEADERS_CACHE:-$HOME/.cache/xenshare-headers}
# (apt-get download + dpkg-deb -x: no install, no root needed once package lists exist). Exits 2 with a
# message on stderr when neither works.
set -euo pipefail
if [ -f /usr/include/xen/io/xs_wire.h ]; then echo /usr/include; exit 0; fi
C=${XENSHARE_HEADERS_CACHE:-$HOME/.cache/xenshare-headers}
if [ -f "$C/usr/include/xen/io/xs_wire.h" ]; then echo "$C/usr/include"; exit 0; fi
mkdir -p "$C/debs"
cd "$C/debs"
if ! apt-get download libxen-dev >/dev/null 2>&1; then
    # No package lists yet (a fresh machine): refresh them when allowed, then try once more.
    if [ "$(id -u)" -eq 0 ]; then apt-get update -q >/dev/null 2>&1 || true; fi
    apt-get download libxen-dev >/dev/null 2>&1 || { echo "libxen-headers: apt-get download libxen-dev failed (run apt-get update, or apt-get install libxen-dev)" >&2; exit 2; }
fi
deb=$(ls -t libxen-dev_*.deb | head -n 1)
dpkg-deb -x "$deb" "$C"
[ -f "$C/usr/include/xen/io/xs_wire.h" ] || { echo "libxen-headers: $deb has no xen/io/xs_wire.h" >&2; exit 2; }
echo "$C/usr/include"
