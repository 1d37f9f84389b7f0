#!/bin/sh
# Start beneathd on a demo root (/tmp/beneathd-demo) with its socket at /tmp/beneathd-demo.sock.
# Run from the checkout after `python3 -m venv .venv && .venv/bin/pip install -e '.[test]'`.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=${BENEATHD_DEMO_ROOT:-/tmp/beneathd-demo}
sock=${BENEATHD_DEMO_SOCKET:-/tmp/beneathd-demo.sock}
mkdir -p "$root"
[ -e "$root/hello.txt" ] || echo "hello from beneathd" > "$root/hello.txt"
if [ "$(id -u)" = 0 ]; then
    # never serve as root: the daemon drops to nobody, which must own the demo tree
    chown -R nobody "$root"
    set -- --user nobody --allow-uid 0
fi
echo "beneathd: serving $root on $sock (try: $here/.venv/bin/beneathd-ctl --socket $sock ls)" >&2
exec "$here/.venv/bin/beneathd" --root "$root" --socket "$sock" "$@"
