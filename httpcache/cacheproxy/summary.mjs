// summary.mjs counts the required tests of one run of the HTTP cache test
// suite (http-tests/cache-tests) that pass and fail, and lists the failures
// with the suite's reason.
//
//	node summary.mjs <suite checkout> <results.json>
//
// It counts twice. "Strict" judges each test on its own, ignoring the
// dependencies between tests; it is how the comparison in httpcache's
// documentation was counted, from the published results of other caches.
// "As shown" is what cache-tests.fyi shows: a test whose dependency failed
// is neither a pass nor a fail there.
import { readFileSync } from 'node:fs'
import { pathToFileURL } from 'node:url'
import { join, resolve } from 'node:path'

const [suiteDir, resultsFile] = process.argv.slice(2)
if (!suiteDir || !resultsFile) {
  console.error('usage: node summary.mjs <suite checkout> <results.json>')
  process.exit(2)
}
const root = resolve(suiteDir)
const load = p => import(pathToFileURL(join(root, p)).href)
const { default: suites } = await load('tests/index.mjs')
const { determineTestResult, resultTypes } = await load('test-engine/lib/results.mjs')
const results = JSON.parse(readFileSync(resultsFile, 'utf8'))

function count (honorDependencies) {
  const c = { pass: 0, fail: 0, other: 0, failures: [] }
  for (const suite of suites) {
    for (const test of suite.tests) {
      if (test.kind !== undefined && test.kind !== 'required') continue
      const r = determineTestResult(suites, test.id, results, honorDependencies)
      if (r === resultTypes.pass) {
        c.pass++
      } else if (r === resultTypes.fail) {
        c.fail++
        const detail = results[test.id] === undefined ? '' : results[test.id][1] || ''
        c.failures.push(`${suite.id} ${test.id}: ${detail}`)
      } else {
        c.other++
      }
    }
  }
  return c
}

const strict = count(false)
const shown = count(true)
console.log(`required, strict:   pass ${strict.pass}, fail ${strict.fail}, not run ${strict.other}`)
console.log(`required, as shown: pass ${shown.pass}, fail ${shown.fail}, not counted ${shown.other}`)
for (const f of strict.failures) console.log(`  FAIL ${f}`)
