#!/usr/bin/env node
// One "browser" of the scale benchmark (tests/benchmarks/scale.py): it opens
// several documents through the y-websocket server with the packages the mrmd
// editor runs (yjs 13 + y-websocket), writes one cell per run into each, asks
// for the runs the way the editor does (request entries in Y.Map('executions'),
// round-robin over its documents, one every --interval-ms), waits until every
// entry is final, and prints one JSON line: each run's final status and who
// claimed it, and whether its output block holds its output exactly once.
//
//   node scale_browser.mjs --url ws://127.0.0.1:P --docs a.md,b.md --runtime URL
//                          [--runs 4] [--interval-ms 20] [--lines 20] [--timeout-s 300]

import * as Y from '../js/node_modules/yjs/dist/yjs.mjs'
import { WebsocketProvider } from '../js/node_modules/y-websocket/src/y-websocket.js'
import WebSocket from '../js/node_modules/ws/wrapper.mjs'

console.log = console.info = console.debug = console.warn = (...a) => console.error(...a)

const args = { runs: 4, intervalMs: 20, lines: 20, timeoutS: 300 }
const argv = process.argv.slice(2)
for (let i = 0; i < argv.length; i++) {
  const k = argv[i]
  const v = argv[++i]
  if (k === '--url') args.url = v
  else if (k === '--docs') args.docs = v.split(',')
  else if (k === '--runtime') args.runtime = v
  else if (k === '--runs') args.runs = Number(v)
  else if (k === '--interval-ms') args.intervalMs = Number(v)
  else if (k === '--lines') args.lines = Number(v)
  else if (k === '--timeout-s') args.timeoutS = Number(v)
  else { console.error(`unknown argument ${k}`); process.exit(2) }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const FINAL = new Set(['completed', 'error', 'cancelled'])
const tag = Math.random().toString(16).slice(2, 8)

const docs = args.docs.map((name) => {
  const ydoc = new Y.Doc()
  const provider = new WebsocketProvider(args.url, name, ydoc, { WebSocketPolyfill: WebSocket, disableBc: true })
  provider.awareness.setLocalState({ user: { name: 'scale-browser', color: '#30bced' } })
  return { name, ydoc, provider, text: ydoc.getText('content'), map: ydoc.getMap('executions'), runs: [] }
})

const synced = (d) => new Promise((resolve) => {
  if (d.provider.synced) resolve()
  else d.provider.once('sync', (ok) => ok && resolve())
})
await Promise.all(docs.map(synced))

// The cells first, one per run (distinct code, so each block goes after its own cell).
for (const d of docs) {
  let text = ''
  for (let r = 0; r < args.runs; r++) {
    const execId = `scale-${tag}-${d.name.replace(/[^a-z0-9]/gi, '')}-${r}`
    const code = JSON.stringify({ lines: args.lines, chunk: 3, sleep_ms: 15, accumulated: false, id: execId })
    d.runs.push({ execId, code })
    text += '```python\n' + code + '\n```\n\n'
  }
  d.ydoc.transact(() => { d.text.delete(0, d.text.length); d.text.insert(0, text) })
}

const t0 = Date.now()
for (let r = 0; r < args.runs; r++) {
  for (const d of docs) {
    const { execId, code } = d.runs[r]
    d.map.set(execId, {
      id: execId, cellId: null, code, language: 'python', runtimeUrl: args.runtime,
      session: `s-${d.name}`, status: 'requested', requestedBy: d.ydoc.clientID,
      requestedAt: Date.now(), claimedBy: null, claimedAt: null, outputBlockReady: false,
      outputPosition: null, startedAt: null, completedAt: null, stdinRequest: null,
      stdinResponse: null, result: null, error: null, displayData: []
    })
    if (args.intervalMs > 0) await sleep(args.intervalMs)
  }
}

const allFinal = () => docs.every((d) => d.runs.every(({ execId }) => {
  const e = d.map.get(execId)
  return e && FINAL.has(e.status)
}))
const deadline = Date.now() + args.timeoutS * 1000
while (!allFinal() && Date.now() < deadline) await sleep(100)
const elapsed = (Date.now() - t0) / 1000

const expected = Array.from({ length: args.lines }, (_, i) => `${i}\n`).join('')
const results = []
for (const d of docs) {
  const text = d.text.toString()
  for (const { execId } of d.runs) {
    const e = d.map.get(execId) || {}
    const fence = '```output:' + execId + '\n'
    const at = text.indexOf(fence)
    const blocks = text.split(fence).length - 1
    const content = at < 0 ? null : text.slice(at + fence.length, text.indexOf('```', at + fence.length))
    results.push({ doc: d.name, execId, status: e.status || null, claimedBy: e.claimedBy || null, errorType: (e.error && e.error.type) || null, dispatchedAt: e.dispatchedAt || null, blocks, outputOk: content === expected })
  }
}
process.stdout.write(JSON.stringify({ elapsed, results }) + '\n')
for (const d of docs) d.provider.destroy()
process.exit(0)
