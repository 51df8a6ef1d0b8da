#!/bin/bash
# Runs the whole test suite: installs what it needs (Debian packages, dockerd, npm modules), builds, then unit and e2e tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
[ -d node_modules ] && [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund
npm run -s build
# The tests are type-checked too (tsconfig.json builds src alone): a test that no longer fits the code fails here, not at run time.
npm run -s typecheck
bash scripts/build-native.sh
report=$(mktemp)
trap 'rm -f "$report"' EXIT
set +e
npx vitest run --reporter=default --reporter=json --outputFile="$report" "$@"
rc=$?
set -e
# One closing line that any CI can read: "N passed, N failed, N skipped".
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const skipped = r.numPendingTests + r.numTodoTests;
  console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);
' "$report" 2>/dev/null || echo "0 passed, 1 failed"
exit $rc
