#!/bin/bash
# Runs the whole test suite: installs what it needs (Debian packages, dockerd, npm modules), builds, type-checks, then the node, tools and boot tiers.
# --slow adds the slow tier (*.slow.test.ts: an arm64 distribution build under emulation, many minutes); other
# arguments go to vitest.
set -euo pipefail
if [ "${1:-}" = --slow ]; then
  export IMG2VM_SLOW=1
  shift
fi
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
[ -d node_modules ] && [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund
npm run -s build
# The tests are type-checked too (tsconfig.json builds src alone): a test that no longer fits the code fails here, not at run time.
npm run -s typecheck
npm run -s lint
bash scripts/build-native.sh
report=$(mktemp)
trap 'rm -f "$report"' EXIT
set +e
npx vitest run --reporter=default --reporter=json --outputFile="$report" "$@"
rc=$?
set -e
# Where the time went, per tier (named by file suffix, as vitest.config.ts chooses them) and the slowest files; the
# whole report is kept where IMG2VM_TEST_REPORT says. Then one closing line that any CI can read: "N passed, N failed, N skipped".
[ -n "${IMG2VM_TEST_REPORT:-}" ] && cp "$report" "$IMG2VM_TEST_REPORT"
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const tier = (f) => (/\.slow\.test\.ts$/.test(f) ? "slow" : /\.boot\.test\.ts$/.test(f) ? "boot" : /\.tools\.test\.ts$/.test(f) ? "tools" : "node");
  const files = r.testResults.map((f) => ({ name: f.name.slice(process.cwd().length + 1), tier: tier(f.name), s: (f.endTime - f.startTime) / 1000, tests: f.assertionResults.length }));
  const tiers = {};
  for (const f of files) (tiers[f.tier] ??= { files: 0, tests: 0, s: 0 }), (tiers[f.tier].files++, (tiers[f.tier].tests += f.tests), (tiers[f.tier].s += f.s));
  for (const [t, v] of Object.entries(tiers)) console.log(`${t}: ${v.files} files, ${v.tests} tests, ${Math.round(v.s)} s of file time`);
  console.log("slowest files:");
  for (const f of files.sort((a, b) => b.s - a.s).slice(0, 10)) console.log(`  ${f.s.toFixed(1).padStart(7)} s  ${f.name}`);
' "$report" 2>/dev/null || true
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const skipped = r.numPendingTests + r.numTodoTests;
  console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);
' "$report" 2>/dev/null || echo "0 passed, 1 failed"
exit $rc
