#!/usr/bin/env bash
# Debian packages the test suite drives (PgBouncer, nginx, Chromium, wrk, curl). Installed only
# when missing, and only where we may (root, or passwordless sudo); otherwise the tests that need
# them say so.
# With arguments, only those of its packages (`make cluster`: nginx pgbouncer).
set -euo pipefail

packages=()
command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || packages+=(pgbouncer)
# The load balancer of the several-replica topology (deploy/cluster.py, tests/test_cluster.py).
# The cluster runs its own nginx (`nginx -c <its config> -p <its directory>` on its own port),
# so a system nginx the package may start on port 80 is neither needed nor in the way.
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || packages+=(nginx)
# Browser tests (tests/test_browser.py): Debian's Chromium and its ChromeDriver, never a downloaded browser.
[ -x /usr/bin/chromium ] || packages+=(chromium)
[ -x /usr/bin/chromedriver ] || packages+=(chromium-driver)
# The benchmark's load generator (bench/, tests/test_bench_smoke.py).
command -v wrk >/dev/null 2>&1 || packages+=(wrk)
# The README's walkthrough is curl commands, run as written (tests/test_readme_walkthrough.py).
command -v curl >/dev/null 2>&1 || packages+=(curl)
if [ $# -gt 0 ]; then
  wanted=()
  for package in "${packages[@]}"; do
    for name in "$@"; do [ "$package" = "$name" ] && wanted+=("$package"); done
  done
  packages=("${wanted[@]}")
fi
[ ${#packages[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO="sudo -n"
else
  echo "install-system-deps: cannot install ${packages[*]} (not root); the tests that need them will be skipped" >&2
  exit 0
fi
echo "install-system-deps: installing ${packages[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
