#!/usr/bin/env bash
# Prints the folder holding Debian's xenstore tools (xenstore-read, -write, -ls, -rm, -list, -exists,
# -chmod, -watch) on the first line and the folder of their libraries on the second: the installed
# package when present, else the packages xenstore-utils, libxenstore4 and libxentoolcore1 unpacked (not
# installed: apt-get download + dpkg-deb -x) into ${XENSHARE_XSUTILS_CACHE:-$HOME/.cache/xenshare-xenstore-utils}.
# Used by the interop test that runs them against `xenshare xenstored`. Exits 2 with a message on stderr
# when neither works.
set -euo pipefail
if [ -x /usr/bin/xenstore-read ] && ldconfig -p 2>/dev/null | grep -q libxenstore.so.4; then
    echo /usr/bin
    echo /usr/lib
    exit 0
fi
C=${XENSHARE_XSUTILS_CACHE:-$HOME/.cache/xenshare-xenstore-utils}
arch=$(dpkg --print-architecture)
triplet=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo "$(uname -m)-linux-gnu")
if [ ! -x "$C/root/usr/bin/xenstore-read" ] || [ ! -e "$C/root/usr/lib/$triplet/libxentoolcore.so.1" ]; then
    mkdir -p "$C/debs"
    cd "$C/debs"
    fetch() { apt-get download xenstore-utils libxenstore4 libxentoolcore1 >/dev/null 2>&1; }
    if ! fetch; then
        if [ "$(id -u)" -eq 0 ]; then apt-get update -q >/dev/null 2>&1 || true; fi
        fetch || { echo "xenstore-utils: apt-get download xenstore-utils libxenstore4 libxentoolcore1 failed" >&2; exit 2; }
    fi
    rm -rf "$C/root"
    for d in xenstore-utils_*_"$arch".deb libxenstore4_*_"$arch".deb libxentoolcore1_*_"$arch".deb; do
        dpkg-deb -x "$(ls -t $d | head -n 1)" "$C/root"
    done
fi
[ -x "$C/root/usr/bin/xenstore-read" ] || { echo "xenstore-utils: no xenstore-read in the package" >&2; exit 2; }
echo "$C/root/usr/bin"
echo "$C/root/usr/lib/$triplet"
