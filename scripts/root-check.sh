#!/usr/bin/env bash
# The README's two commands, as root, in a clone inside a private folder (mode 700, as /root is):
# the embedded PostgreSQL runs as another user there, which cannot enter that folder. Run by CI
# when it runs as root; skipped otherwise.
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
  echo "root-check: not running as root; skipped"
  exit 0
fi

repo=$(cd "$(dirname "$0")/.." && pwd)
parent=/root
[[ -d $parent ]] || parent=/
home=$(mktemp -d "$parent/pollcast-root-check.XXXXXX")
chmod 700 "$home"
clone="$home/pollcast"
service=""

free_port() { node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close() })'; }

cleanup() {
  if [[ -n $service ]] && kill -0 "$service" 2>/dev/null; then kill -KILL "$service" 2>/dev/null || true; fi
  # The data the embedded server kept outside the private folder (the start-up log says where).
  moved=$(sed -n 's/.*its data (DATA_DIR [^)]*) is kept in \([^ ]*\).*/\1/p' "$home/start.log" 2>/dev/null | head -n 1)
  [[ -n $moved && $moved == /var/lib/pollcast/data/* ]] && rm -rf "$(dirname "$moved")"
  rm -rf "$home"
}
trap cleanup EXIT

git clone -q "$repo" "$clone"
cd "$clone"
echo "root-check: a clone in $home (mode $(stat -c %a "$home")), as $(id -un)"

port=$(free_port)
pg_port=$(free_port)
echo "root-check: npm install && npm start"
npm install --no-audit --no-fund --loglevel=error
PORT=$port EMBEDDED_POSTGRES_PORT=$pg_port npm start >"$home/start.log" 2>&1 &
service=$!
for _ in $(seq 1 120); do
  grep -q "Listening on" "$home/start.log" && break
  kill -0 "$service" 2>/dev/null || break
  sleep 0.5
done
if ! grep -q "Listening on" "$home/start.log"; then
  echo "root-check: npm start did not start:"
  cat "$home/start.log"
  exit 1
fi
grep "Running as root" "$home/start.log" || true
reply=$(curl -sf -X POST "http://127.0.0.1:$port/messages" -H 'content-type: application/json' -d '{"body":"root check"}')
echo "root-check: POST /messages answered $reply"
kill -TERM "$service"
wait "$service"
service=""
echo "root-check: npm start stopped cleanly"

echo "root-check: npm test"
npm test
echo "root-check: both README commands work as root in a private folder"
