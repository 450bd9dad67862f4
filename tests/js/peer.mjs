#!/usr/bin/env node
// A scriptable "browser" peer for mrmd-monitor's end-to-end tests.
//
// It joins one document through a y-websocket server with the same npm
// packages the mrmd editor runs (yjs 13 + y-websocket's WebsocketProvider) and
// behaves like the editor towards Y.Map('executions'): it writes request
// entries, creates the output block when its request is claimed, shows and
// removes the temporary stdin block, answers stdin and cancels.
//
//   node peer.mjs --url ws://127.0.0.1:PORT --doc NAME [--no-auto-block]
//
// Protocol: one JSON object per line on stdin (a command, always with an
// "id"), one JSON object per line on stdout: either a reply
// {"id": <same>, "ok": true, ...result} / {"id": <same>, "ok": false, "error": "..."}
// or an unsolicited event {"event": "..."}. Nothing else is ever written to
// stdout; diagnostics go to stderr. The command name is in "cmd".
//
// Commands (arguments -> reply fields):
//   ping / info                      -> clientId (info: synced, connected, autoBlock, doc, url)
//   waitSynced                       -> clientId, once the provider is synced
//   getText                          -> text
//   setText {text}                   replaces the whole text in one transaction
//   insert {index, text} / delete {index, length}   (JS string indices)
//   insertAfter {anchor, text}       -> index; error if the anchor is absent
//   type {after, text, delayMs}      -> typed; one transaction per character
//   request {execId, code, language, runtimeUrl, session, cellId} -> entry
//   setAutoBlock {on}                -> autoBlock
//   cancel {execId}                  -> cancelled (false if already final)
//   answerStdin {execId, text}       writes stdinResponse, removes the stdin block
//   getEntry {execId} -> entry (null if absent); entries -> entries
//   setEntry {execId, value} / deleteEntry {execId}   raw map writes
//   awareness -> states [[clientId, state], ...] of the other peers; setAwareness {state}
//   monitors -> states of the other peers that the editor's isMonitorAvailable() takes
//                for a monitor (state.user.type === 'monitor'), with their clocks
//   disconnect / connect / quit      (quit replies, then exits 0; so does EOF on stdin)
//   stateSize -> bytes; resolvePosition {position} -> index (null if unresolvable)
//   watch {execId} / unwatch {execId?}   entry + text events for benchmarks
// Events: status {status}, synced {clientId, count}, entry {execId, status, t},
// text {t, length}.
//
// Auto block (default on; --no-auto-block or setAutoBlock): for entries this
// peer requested, the first "claimed" creates or reuses the output block after
// the cell and then marks the entry "ready" with outputBlockReady and
// outputPosition; a new stdinRequest shows a "```stdin:<id>" block after the
// output block, removed on answerStdin or when the entry becomes final.

import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import readline from 'node:readline'

// ---------------------------------------------------------------- stdout
// Libraries log with console.log/info/debug; keep stdout for the protocol.
const toStderr = (...args) => console.error(...args)
console.log = toStderr
console.info = toStderr
console.debug = toStderr
console.warn = toStderr

const out = (obj) => {
  process.stdout.write(JSON.stringify(obj) + '\n')
}
const log = (...args) => {
  console.error('[peer]', ...args)
}

// ---------------------------------------------------------------- arguments
const parseArgs = (argv) => {
  const opts = { url: null, doc: null, autoBlock: true, name: null, token: null }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--url') opts.url = argv[++i]
    else if (a === '--doc') opts.doc = argv[++i]
    else if (a === '--name') opts.name = argv[++i]
    else if (a === '--token') opts.token = argv[++i] // sent as ?token= (y-websocket params)
    else if (a === '--no-auto-block') opts.autoBlock = false
    else if (a === '--auto-block') opts.autoBlock = true
    else {
      console.error(`unknown argument: ${a}`)
      process.exit(2)
    }
  }
  if (!opts.url || !opts.doc) {
    console.error('usage: node peer.mjs --url ws://HOST:PORT --doc NAME [--no-auto-block] [--name NAME]')
    process.exit(2)
  }
  return opts
}

const opts = parseArgs(process.argv.slice(2))
let autoBlock = opts.autoBlock

// ---------------------------------------------------------------- document
const ydoc = new Y.Doc()
const ytext = ydoc.getText('content')
const ymap = ydoc.getMap('executions')

const provider = new WebsocketProvider(opts.url, opts.doc, ydoc, {
  WebSocketPolyfill: WebSocket, // node 20 has no global WebSocket
  disableBc: true, // no BroadcastChannel between processes; it also keeps node alive
  maxBackoffTime: 500, // reconnect quickly in fault tests
  params: opts.token ? { token: opts.token } : {},
  connect: false // connect below, once the status listener is attached
})
provider.awareness.setLocalState({
  user: { name: opts.name || `test-browser-${ydoc.clientID}`, color: '#30bced' },
  peer: 'tests/js/peer.mjs'
})

let syncCount = 0
provider.on('status', ({ status }) => {
  out({ event: 'status', status })
})
provider.on('sync', (isSynced) => {
  if (isSynced) {
    syncCount++
    out({ event: 'synced', clientId: ydoc.clientID, count: syncCount })
    const waiters = syncWaiters.splice(0)
    for (const w of waiters) w()
  }
})
provider.on('connection-error', () => {
  log('connection error')
})
const syncWaiters = []
provider.connect()

// ---------------------------------------------------------------- helpers
const FINAL = new Set(['completed', 'error', 'cancelled'])

const plain = (v) => {
  if (v === undefined) return null
  if (v instanceof Y.AbstractType) return v.toJSON()
  return v
}

const getEntry = (execId) => plain(ymap.get(execId))

const fence = (s) => '```' + s

// First "\n```" that closes a fenced block, searched from `from`: the fence
// must end its line (followed by "\n" or the end of the text).
const findClosingFence = (text, from) => {
  let i = from
  while (true) {
    const j = text.indexOf('\n```', i)
    if (j === -1) return -1
    const after = j + 4
    if (after === text.length || text[after] === '\n') return j
    i = j + 1
  }
}

// The code cell "```<lang>\n<code>\n```": returns the index just after its
// closing fence, or -1.
const findCellEnd = (text, language, code) => {
  const cell = fence(language) + '\n' + code + '\n```'
  const at = text.indexOf(cell)
  return at === -1 ? -1 : at + cell.length
}

// A block "```<kind>:<anything>\n ... \n```" starting exactly at `start`.
// Returns {start, contentStart, end} (end = just after the closing fence) or null.
const blockAt = (text, start, kind) => {
  const head = fence(kind + ':')
  if (!text.startsWith(head, start)) return null
  const nl = text.indexOf('\n', start)
  if (nl === -1) return null
  const contentStart = nl + 1
  const close = findClosingFence(text, nl)
  if (close === -1) return null
  return { start, contentStart, end: close + 4 }
}

// The block "```<kind>:<execId>\n ... \n```" wherever it is.
const findBlock = (text, kind, execId) => {
  const marker = fence(kind + ':' + execId) + '\n'
  let from = 0
  while (true) {
    const at = text.indexOf(marker, from)
    if (at === -1) return null
    if (at === 0 || text[at - 1] === '\n') return blockAt(text, at, kind)
    from = at + 1
  }
}

// ---------------------------------------------------------------- editor behaviour
const handledClaims = new Set()
const lastStdinRequest = new Map() // execId -> JSON of the last stdinRequest seen

const createOutputBlock = (execId) => {
  const entry = getEntry(execId)
  if (!entry || typeof entry !== 'object') return
  const language = typeof entry.language === 'string' ? entry.language : 'python'
  const code = typeof entry.code === 'string' ? entry.code : ''
  const marker = fence('output:' + execId) + '\n'
  let contentStart = -1
  ydoc.transact(() => {
    const text = ytext.toString()
    const cellEnd = findCellEnd(text, language, code)
    if (cellEnd === -1) {
      log(`auto-block: cell for ${execId} not found in the text`)
      return
    }
    const existing = text.startsWith('\n\n', cellEnd) ? blockAt(text, cellEnd + 2, 'output') : null
    if (existing) {
      ytext.delete(existing.start, existing.end - existing.start)
      ytext.insert(existing.start, marker + '```')
      contentStart = existing.start + marker.length
    } else {
      ytext.insert(cellEnd, '\n\n' + marker + '```')
      contentStart = cellEnd + 2 + marker.length
    }
  })
  if (contentStart === -1) return
  const current = getEntry(execId)
  if (!current || current.status !== 'claimed') {
    log(`auto-block: ${execId} is no longer claimed (${current && current.status}); not marking ready`)
    return
  }
  const rel = Y.createRelativePositionFromTypeIndex(ytext, contentStart, -1)
  ydoc.transact(() => {
    ymap.set(execId, {
      ...current,
      outputBlockReady: true,
      outputPosition: Y.relativePositionToJSON(rel),
      status: 'ready'
    })
  })
}

const showStdinBlock = (execId) => {
  ydoc.transact(() => {
    const text = ytext.toString()
    if (findBlock(text, 'stdin', execId)) return
    const output = findBlock(text, 'output', execId)
    if (!output) {
      log(`stdin: output block for ${execId} not found; no stdin block shown`)
      return
    }
    ytext.insert(output.end, '\n\n' + fence('stdin:' + execId) + '\n```')
  })
}

const removeStdinBlock = (execId) => {
  ydoc.transact(() => {
    const text = ytext.toString()
    const block = findBlock(text, 'stdin', execId)
    if (!block) return
    let start = block.start
    if (start >= 2 && text.slice(start - 2, start) === '\n\n') start -= 2
    ytext.delete(start, block.end - start)
  })
}

const onEntryChanged = (execId) => {
  const entry = getEntry(execId)
  if (!entry || typeof entry !== 'object') return
  if (Number(entry.requestedBy) !== ydoc.clientID) return
  if (entry.status === 'claimed' && !handledClaims.has(execId)) {
    handledClaims.add(execId)
    createOutputBlock(execId)
  }
  const req = entry.stdinRequest == null ? null : JSON.stringify(entry.stdinRequest)
  const before = lastStdinRequest.has(execId) ? lastStdinRequest.get(execId) : null
  lastStdinRequest.set(execId, req)
  if (req !== null && req !== before && !FINAL.has(entry.status)) {
    showStdinBlock(execId)
  }
  if (FINAL.has(entry.status)) {
    removeStdinBlock(execId)
  }
}

// Work is deferred out of the observer so that every edit is its own
// transaction, as in the editor (which reacts from its own event handlers).
const pending = new Set()
let scheduled = false
const schedule = (execId) => {
  pending.add(execId)
  if (scheduled) return
  scheduled = true
  setImmediate(() => {
    scheduled = false
    const ids = Array.from(pending)
    pending.clear()
    if (!autoBlock) return
    for (const id of ids) {
      try {
        onEntryChanged(id)
      } catch (e) {
        log(`auto-block failed for ${id}:`, e && e.stack ? e.stack : e)
      }
    }
  })
}

// ---------------------------------------------------------------- watch (benchmarks)
const watched = new Set()
let textWatch = false

ymap.observe((event) => {
  for (const key of event.keysChanged) {
    if (autoBlock) schedule(key)
    if (watched.has(key)) {
      const e = getEntry(key)
      out({ event: 'entry', execId: key, status: e && typeof e === 'object' ? e.status : null, t: Date.now() })
    }
  }
})
ytext.observe(() => {
  if (textWatch) out({ event: 'text', t: Date.now(), length: ytext.length })
})

// ---------------------------------------------------------------- commands
const need = (args, name, type) => {
  const v = args[name]
  if (type === 'string' && typeof v !== 'string') throw new Error(`"${name}" must be a string`)
  if (type === 'number' && (typeof v !== 'number' || !Number.isFinite(v))) throw new Error(`"${name}" must be a number`)
  return v
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

const commands = {
  ping: () => ({ clientId: ydoc.clientID }),
  info: () => ({
    clientId: ydoc.clientID,
    synced: provider.synced,
    connected: provider.wsconnected,
    autoBlock,
    doc: opts.doc,
    url: opts.url
  }),
  waitSynced: () => {
    if (provider.synced) return { clientId: ydoc.clientID }
    return new Promise((resolve) => syncWaiters.push(() => resolve({ clientId: ydoc.clientID })))
  },
  getText: () => ({ text: ytext.toString() }),
  setText: (a) => {
    const text = need(a, 'text', 'string')
    ydoc.transact(() => {
      if (ytext.length > 0) ytext.delete(0, ytext.length)
      if (text.length > 0) ytext.insert(0, text)
    })
    return {}
  },
  insert: (a) => {
    const index = need(a, 'index', 'number')
    const text = need(a, 'text', 'string')
    if (index < 0 || index > ytext.length) throw new Error(`index ${index} out of range 0..${ytext.length}`)
    ytext.insert(index, text)
    return {}
  },
  delete: (a) => {
    const index = need(a, 'index', 'number')
    const length = need(a, 'length', 'number')
    if (index < 0 || length < 0 || index + length > ytext.length) {
      throw new Error(`range ${index}+${length} out of range 0..${ytext.length}`)
    }
    ytext.delete(index, length)
    return {}
  },
  insertAfter: (a) => {
    const anchor = need(a, 'anchor', 'string')
    const text = need(a, 'text', 'string')
    const s = ytext.toString()
    const at = s.indexOf(anchor)
    if (at === -1) throw new Error(`anchor not found: ${JSON.stringify(anchor)}`)
    ytext.insert(at + anchor.length, text)
    return { index: at + anchor.length }
  },
  type: async (a) => {
    const after = need(a, 'after', 'string')
    const text = need(a, 'text', 'string')
    const delayMs = a.delayMs == null ? 0 : need(a, 'delayMs', 'number')
    const s = ytext.toString()
    const at = s.indexOf(after)
    if (at === -1) throw new Error(`anchor not found: ${JSON.stringify(after)}`)
    // Follow the previously typed character (or the anchor's last character)
    // with a relative position, so concurrent edits do not move the caret.
    let caret = at + after.length
    let rel = caret > 0 ? Y.createRelativePositionFromTypeIndex(ytext, caret, -1) : null
    let typed = 0
    for (const ch of text) { // code points: never split a surrogate pair
      if (rel !== null) {
        const abs = Y.createAbsolutePositionFromRelativePosition(rel, ydoc)
        if (abs === null) throw new Error('caret position lost')
        caret = abs.index
      }
      ytext.insert(caret, ch)
      caret += ch.length
      rel = Y.createRelativePositionFromTypeIndex(ytext, caret, -1)
      typed++
      if (delayMs > 0) await sleep(delayMs)
      else await new Promise((resolve) => setImmediate(resolve))
    }
    return { typed }
  },
  request: (a) => {
    const execId = need(a, 'execId', 'string')
    const code = need(a, 'code', 'string')
    const entry = {
      id: execId,
      cellId: a.cellId == null ? null : a.cellId,
      code,
      language: a.language == null ? 'python' : a.language,
      runtimeUrl: a.runtimeUrl == null ? null : a.runtimeUrl,
      session: a.session == null ? 'default' : a.session,
      status: 'requested',
      requestedBy: ydoc.clientID,
      requestedAt: Date.now(),
      claimedBy: null,
      claimedAt: null,
      outputBlockReady: false,
      outputPosition: null,
      startedAt: null,
      completedAt: null,
      stdinRequest: null,
      stdinResponse: null,
      result: null,
      error: null,
      displayData: []
    }
    ymap.set(execId, entry)
    return { entry }
  },
  setAutoBlock: (a) => {
    autoBlock = Boolean(a.on)
    return { autoBlock }
  },
  cancel: (a) => {
    const execId = need(a, 'execId', 'string')
    const entry = getEntry(execId)
    if (!entry || typeof entry !== 'object') throw new Error(`no entry ${execId}`)
    if (FINAL.has(entry.status)) return { cancelled: false, status: entry.status }
    ymap.set(execId, { ...entry, status: 'cancelled', completedAt: Date.now() })
    return { cancelled: true }
  },
  answerStdin: (a) => {
    const execId = need(a, 'execId', 'string')
    let text = need(a, 'text', 'string')
    if (!text.endsWith('\n')) text += '\n'
    const entry = getEntry(execId)
    if (!entry || typeof entry !== 'object') throw new Error(`no entry ${execId}`)
    ymap.set(execId, { ...entry, stdinResponse: { text, respondedAt: Date.now() } })
    removeStdinBlock(execId)
    return {}
  },
  getEntry: (a) => ({ entry: getEntry(need(a, 'execId', 'string')) }),
  entries: () => ({ entries: ymap.toJSON() }),
  setEntry: (a) => {
    const execId = need(a, 'execId', 'string')
    if (!('value' in a)) throw new Error('"value" is required')
    ymap.set(execId, a.value)
    return {}
  },
  deleteEntry: (a) => {
    ymap.delete(need(a, 'execId', 'string'))
    return {}
  },
  awareness: () => ({
    states: Array.from(provider.awareness.getStates().entries()).filter(([id]) => id !== ydoc.clientID)
  }),
  monitors: () => ({
    states: Array.from(provider.awareness.getStates().entries())
      .filter(([id, state]) => id !== ydoc.clientID && state?.user?.type === 'monitor'),
    clocks: Object.fromEntries(Array.from(provider.awareness.meta.entries())
      .map(([id, meta]) => [id, meta.clock]))
  }),
  setAwareness: (a) => {
    provider.awareness.setLocalState(a.state === undefined ? null : a.state)
    return {}
  },
  disconnect: () => {
    provider.disconnect()
    return {}
  },
  connect: () => {
    provider.connect()
    return {}
  },
  stateSize: () => ({ bytes: Y.encodeStateAsUpdate(ydoc).length }),
  resolvePosition: (a) => {
    // A relative position as JSON (e.g. an entry's outputPosition) -> JS string index, or null.
    if (a.position == null || typeof a.position !== 'object') throw new Error('"position" must be an object')
    const abs = Y.createAbsolutePositionFromRelativePosition(Y.createRelativePositionFromJSON(a.position), ydoc)
    return { index: abs === null ? null : abs.index }
  },
  watch: (a) => {
    watched.add(need(a, 'execId', 'string'))
    textWatch = true
    return {}
  },
  unwatch: (a) => {
    if (a.execId == null) watched.clear()
    else watched.delete(a.execId)
    if (watched.size === 0) textWatch = false
    return {}
  }
}

let quitting = false
const shutdown = (code) => {
  if (quitting) return
  quitting = true
  try {
    provider.destroy()
  } catch (e) {
    log('destroy failed:', e)
  }
  // Let the websocket close frame and the pending stdout lines go out.
  process.stdout.write('', () => setTimeout(() => process.exit(code), 50))
}

const handleLine = async (line) => {
  if (line.trim() === '') return
  let msg
  try {
    msg = JSON.parse(line)
  } catch (e) {
    out({ id: null, ok: false, error: `invalid JSON: ${e.message}` })
    return
  }
  const id = msg && typeof msg === 'object' && 'id' in msg ? msg.id : null
  const cmd = msg && typeof msg === 'object' ? msg.cmd : undefined
  if (cmd === 'quit') {
    out({ id, ok: true })
    shutdown(0)
    return
  }
  const fn = Object.prototype.hasOwnProperty.call(commands, cmd) ? commands[cmd] : null
  if (!fn) {
    out({ id, ok: false, error: `unknown command: ${JSON.stringify(cmd)}` })
    return
  }
  // Synchronous commands reply at once, so replies keep the order of the
  // commands; asynchronous ones (waitSynced, type) reply when they finish.
  const reply = (result) => out({ ...(result || {}), id, ok: true })
  const fail = (e) => out({ id, ok: false, error: e && e.message ? e.message : String(e) })
  let result
  try {
    result = fn(msg)
  } catch (e) {
    fail(e)
    return
  }
  if (result && typeof result.then === 'function') {
    try {
      reply(await result)
    } catch (e) {
      fail(e)
    }
  } else {
    reply(result)
  }
}

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
rl.on('line', (line) => {
  handleLine(line).catch((e) => log('command failed:', e))
})
rl.on('close', () => shutdown(0))
process.on('SIGTERM', () => shutdown(0))
process.on('SIGINT', () => shutdown(0))
process.stdout.on('error', () => process.exit(0)) // EPIPE: our reader is gone
