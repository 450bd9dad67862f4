#!/usr/bin/env node
// The benchmarks' "browser": one npm yjs + y-websocket peer per document that
// records, with wall-clock timestamps (ms, sub-ms precision), when text
// arrives and when entries change status. With --editor it also requests runs
// and creates their output blocks the way the mrmd editor does (like
// tests/js/peer.mjs), for workloads over many documents in one process.
//
//   node observer.mjs --url ws://127.0.0.1:PORT --doc A [--doc B ...] [--editor]
//
// stdin: one JSON command per line {"id", "cmd", ...}; stdout: replies
// {"id", "ok", ...} and events:
//   {"event":"synced", doc}
//   {"event":"entry", doc, execId, status, t}      every status change of a watched entry
//   {"event":"text", doc, t, inserted, deleted, stamps?}  every text change (watched docs)
//     stamps: the numbers of "T<epoch ms>" found in the inserted text (with "scan")
// Commands: waitSynced; setText {doc, text}; getText {doc}; stateSize {doc};
//   watch {doc, scan}; request {doc, execId, code, runtimeUrl, session} -> t;
//   entry {doc, execId}; quit.

import * as Y from '../js/node_modules/yjs/dist/yjs.mjs'
import { WebsocketProvider } from '../js/node_modules/y-websocket/src/y-websocket.js'
import WebSocket from '../js/node_modules/ws/wrapper.mjs'
import readline from 'node:readline'
import { performance } from 'node:perf_hooks'

console.log = console.info = console.debug = console.warn = (...a) => console.error(...a)
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
const now = () => performance.timeOrigin + performance.now()

const opts = { url: null, docs: [], editor: false }
const argv = process.argv.slice(2)
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--url') opts.url = argv[++i]
  else if (argv[i] === '--doc') opts.docs.push(argv[++i])
  else if (argv[i] === '--editor') opts.editor = true
  else { console.error('unknown argument ' + argv[i]); process.exit(2) }
}

const STAMP = /T(\d{10,}\.\d+)/g
const FINAL = new Set(['completed', 'error', 'cancelled'])
const docs = new Map()

const plain = (v) => (v instanceof Y.AbstractType ? v.toJSON() : v === undefined ? null : v)

const createBlock = (d, execId) => {
  // What the editor does on "claimed": block after the cell, then "ready".
  const entry = plain(d.map.get(execId))
  if (!entry || entry.status !== 'claimed') return
  const cell = '```' + (entry.language || 'python') + '\n' + entry.code + '\n```'
  const marker = '```output:' + execId + '\n'
  const text = d.text.toString()
  const at = text.indexOf(cell)
  if (at === -1) { console.error('cell not found for ' + execId); return }
  const contentStart = at + cell.length + 2 + marker.length
  d.ydoc.transact(() => d.text.insert(at + cell.length, '\n\n' + marker + '```'))
  const rel = Y.createRelativePositionFromTypeIndex(d.text, contentStart, -1)
  d.ydoc.transact(() => d.map.set(execId, {
    ...entry, outputBlockReady: true, outputPosition: Y.relativePositionToJSON(rel), status: 'ready'
  }))
}

for (const name of opts.docs) {
  const ydoc = new Y.Doc()
  const d = {
    name, ydoc, text: ydoc.getText('content'), map: ydoc.getMap('executions'),
    synced: false, watching: false, scan: false, statuses: new Map(), mine: new Set(), handled: new Set()
  }
  d.provider = new WebsocketProvider(opts.url, name, ydoc, { WebSocketPolyfill: WebSocket, disableBc: true })
  d.provider.awareness.setLocalState({ user: { name: 'bench-observer' } })
  d.provider.on('sync', (s) => {
    if (s && !d.synced) { d.synced = true; out({ event: 'synced', doc: name }); checkWaiters() }
  })
  d.text.observe((event) => {
    if (!d.watching) return
    const t = now()
    let inserted = 0
    let deleted = 0
    let stamps = null
    for (const op of event.delta) {
      if (typeof op.insert === 'string') {
        inserted += op.insert.length
        if (d.scan) {
          for (const m of op.insert.matchAll(STAMP)) (stamps || (stamps = [])).push(Number(m[1]))
        }
      } else if (op.delete) deleted += op.delete
    }
    const ev = { event: 'text', doc: name, t, inserted, deleted }
    if (stamps) ev.stamps = stamps
    out(ev)
  })
  d.map.observe((event) => {
    const t = now()
    for (const key of event.keysChanged) {
      const e = plain(d.map.get(key))
      const status = e && typeof e === 'object' ? e.status : null
      if (d.watching && d.statuses.get(key) !== status) out({ event: 'entry', doc: name, execId: key, status, t })
      d.statuses.set(key, status)
      if (opts.editor && d.mine.has(key) && status === 'claimed' && !d.handled.has(key)) {
        d.handled.add(key)
        setImmediate(() => createBlock(d, key))
      }
    }
  })
  docs.set(name, d)
}

const waiters = []
const checkWaiters = () => {
  if ([...docs.values()].every((d) => d.synced)) for (const w of waiters.splice(0)) w()
}
const doc = (a) => {
  const d = docs.get(a.doc === undefined ? opts.docs[0] : a.doc)
  if (!d) throw new Error('unknown doc ' + a.doc)
  return d
}

const commands = {
  waitSynced: () => new Promise((resolve) => { waiters.push(() => resolve({})); checkWaiters() }),
  setText: (a) => {
    const d = doc(a)
    d.ydoc.transact(() => { d.text.delete(0, d.text.length); d.text.insert(0, a.text) })
    return {}
  },
  getText: (a) => ({ text: doc(a).text.toString() }),
  stateSize: (a) => ({ bytes: Y.encodeStateAsUpdate(doc(a).ydoc).length }),
  watch: (a) => { const d = doc(a); d.watching = true; d.scan = Boolean(a.scan); return {} },
  entry: (a) => ({ entry: plain(doc(a).map.get(a.execId)) }),
  request: (a) => {
    const d = doc(a)
    const t = Date.now()
    d.mine.add(a.execId)
    d.map.set(a.execId, {
      id: a.execId, cellId: null, code: a.code, language: a.language || 'python',
      runtimeUrl: a.runtimeUrl, session: a.session || 'default', status: 'requested',
      requestedBy: d.ydoc.clientID, requestedAt: t, claimedBy: null, claimedAt: null,
      outputBlockReady: false, outputPosition: null, startedAt: null, completedAt: null,
      stdinRequest: null, stdinResponse: null, result: null, error: null, displayData: []
    })
    return { t: now() }
  }
}

const quit = () => {
  for (const d of docs.values()) d.provider.destroy()
  process.stdout.write('', () => setTimeout(() => process.exit(0), 50))
}

readline.createInterface({ input: process.stdin }).on('line', async (line) => {
  if (!line.trim()) return
  let msg
  try { msg = JSON.parse(line) } catch (e) { out({ id: null, ok: false, error: 'bad JSON' }); return }
  if (msg.cmd === 'quit') { out({ id: msg.id, ok: true }); quit(); return }
  const fn = commands[msg.cmd]
  if (!fn) { out({ id: msg.id, ok: false, error: 'unknown command ' + msg.cmd }); return }
  try {
    const r = await fn(msg)
    out({ ...r, id: msg.id, ok: true })
  } catch (e) {
    out({ id: msg.id, ok: false, error: String(e && e.message ? e.message : e) })
  }
}).on('close', quit)
process.on('SIGTERM', quit)
