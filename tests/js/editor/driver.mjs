#!/usr/bin/env node
// Drives the real mrmd editor (mrmd-electron 0.5.4's editor/mrmd.iife.js) in
// headless chromium for mrmd-monitor's end-to-end tests.
//
//   node driver.mjs [--chromium /usr/bin/chromium]
//
// It serves page.html, page.js and the editor bundle from 127.0.0.1 on a free
// port, launches one chromium (puppeteer-core, no browser download), and
// opens one tab per "open" command. Each tab wires the editor as the app does
// (page.js), in monitor mode or running cells itself.
//
// Protocol (as tests/js/peer.mjs): one JSON command per line on stdin with an
// "id" and a "cmd"; one reply per command on stdout, {"id", "ok": true, ...}
// or {"id", "ok": false, "error"}; the event {"event": "ready", "url"} once the
// browser runs. Diagnostics (the pages' consoles included) go to stderr.
//
// Commands (arguments -> reply fields):
//   open {tab, syncUrl, doc, runtimeUrl, monitor, projectRoot?} -> clientId
//   close {tab}                               closes the tab, as a user closes it
//   setText {tab, text} / text {tab} -> text
//   run {tab, cell}                           clicks the cell's Run button
//   stop {tab, cell, timeoutMs}               waits for the cell's Stop button, clicks it
//   runAll {tab, timeoutMs}                   a click on the first line, then Ctrl+Shift+Enter
//   answerStdin {tab, text, timeoutMs}        waits for the cursor in a stdin block, types, Enter
//   rendered {tab, park} -> items, viewport, length   (page.js)
//   cells {tab} -> cells; collaborators {tab} -> collaborators; cursor {tab} -> cursor
//   executions {tab} -> executions; monitorAvailable {tab} -> available
//   quit                                      closes the browser and exits 0 (so does EOF)

import crypto from 'node:crypto'
import fs from 'node:fs'
import http from 'node:http'
import path from 'node:path'
import readline from 'node:readline'
import { fileURLToPath } from 'node:url'
import puppeteer from 'puppeteer-core'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const APP = path.join(HERE, '..', 'node_modules', 'mrmd-electron')
const BUNDLE = path.join(APP, 'editor', 'mrmd.iife.js')
const STATIC = {
  '/': [path.join(HERE, 'page.html'), 'text/html; charset=utf-8'],
  '/page.js': [path.join(HERE, 'page.js'), 'text/javascript; charset=utf-8'],
  '/mrmd.iife.js': [BUNDLE, 'text/javascript; charset=utf-8'],
  '/favicon.ico': [path.join(APP, 'assets', 'icon-32.png'), 'image/png']
}
const FILE_TYPES = {
  '.png': 'image/png', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.svg': 'image/svg+xml', '.gif': 'image/gif',
  '.woff2': 'font/woff2', '.ttf': 'font/ttf'
}

const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
const log = (...args) => console.error('[driver]', ...args)

let chromium = '/usr/bin/chromium'
for (let i = 2; i < process.argv.length; i++) {
  if (process.argv[i] === '--chromium') chromium = process.argv[++i]
  else {
    console.error(`unknown argument: ${process.argv[i]}`)
    process.exit(2)
  }
}

// ---------------------------------------------------------------- tabs and projects
/** tab name -> {page, projectRoot} */
const tabs = new Map()
/** a random path segment per tab: the project served under /project/<key>/ */
const projects = new Map()

const tabOf = (name) => {
  const tab = tabs.get(name)
  if (!tab) throw new Error(`no open tab ${JSON.stringify(name)}`)
  return tab
}

// A path inside root, or null when the request would leave it.
const inside = (root, rel) => {
  const full = path.resolve(root, rel)
  return full === root || full.startsWith(root + path.sep) ? full : null
}

// ---------------------------------------------------------------- the web server
const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1')
  const send = (status, type, body) => {
    res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store' })
    res.end(body)
  }
  if (req.method !== 'GET') return send(405, 'text/plain', 'GET only\n')
  const known = STATIC[url.pathname]
  if (known) return fs.readFile(known[0], (err, data) => err ? send(500, 'text/plain', String(err)) : send(200, known[1], data))
  // The app's own fonts (its editor asks for /assets/fonts/...), and each tab's project.
  const m = url.pathname.match(/^\/project\/([0-9a-f]+)\/(.+)$/)
  const root = m ? projects.get(m[1]) : url.pathname.startsWith('/assets/') ? APP : null
  const file = root && inside(root, decodeURIComponent(m ? m[2] : url.pathname.slice(1)))
  if (!file) return send(404, 'text/plain', 'not found\n')
  fs.readFile(file, (err, data) => err
    ? send(404, 'text/plain', 'not found\n')
    : send(200, FILE_TYPES[path.extname(file).toLowerCase()] || 'application/octet-stream', data))
})

// As mrmd-electron's asset service: an asset whose bytes are already in
// _assets/ is reused, otherwise it gets a free name under _assets/generated/;
// the document gets the path relative to its own directory.
const saveAsset = async (root, { fetchUrl, filename, docPath }) => {
  const response = await fetch(fetchUrl)
  if (!response.ok) throw new Error(`fetching ${fetchUrl}: HTTP ${response.status}`)
  const bytes = Buffer.from(await response.arrayBuffer())
  const hash = crypto.createHash('sha256').update(bytes).digest('hex')
  const assets = path.join(root, '_assets')
  let rel = null
  const walk = (dir) => {
    for (const entry of fs.existsSync(dir) ? fs.readdirSync(dir, { withFileTypes: true }) : []) {
      const full = path.join(dir, entry.name)
      if (entry.isDirectory()) walk(full)
      else if (!rel && crypto.createHash('sha256').update(fs.readFileSync(full)).digest('hex') === hash) {
        rel = path.relative(assets, full)
      }
    }
  }
  walk(assets)
  if (!rel) {
    const ext = path.extname(filename)
    const base = path.basename(filename, ext).replace(/[^\w.-]/g, '_') || 'asset'
    fs.mkdirSync(path.join(assets, 'generated'), { recursive: true })
    rel = path.join('generated', base + ext)
    for (let n = 1; fs.existsSync(path.join(assets, rel)); n++) rel = path.join('generated', `${base}-${n}${ext}`)
    fs.writeFileSync(path.join(assets, rel), bytes)
  }
  const depth = docPath.split('/').length - 1
  return { assetPath: rel, relativePath: '../'.repeat(depth) + '_assets/' + rel.split(path.sep).join('/') }
}

// ---------------------------------------------------------------- the browser
let browser = null
let baseUrl = null

const launch = async () => {
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  baseUrl = `http://127.0.0.1:${server.address().port}`
  const args = [
    '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--no-default-browser-check',
    // Every tab keeps running at full speed, as the one a user looks at.
    '--disable-background-timer-throttling', '--disable-renderer-backgrounding',
    '--disable-backgrounding-occluded-windows'
  ]
  if (process.getuid && process.getuid() === 0) args.push('--no-sandbox') // chromium refuses root otherwise
  browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    args,
    // Tall: CodeMirror renders only the lines near the viewport.
    defaultViewport: { width: 1280, height: 4000 },
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false
  })
  out({ event: 'ready', url: baseUrl, version: await browser.version() })
}

const openTab = async ({ tab, syncUrl, doc, runtimeUrl, monitor, projectRoot }) => {
  if (tabs.has(tab)) throw new Error(`tab ${tab} is already open`)
  const page = await browser.newPage()
  const entry = { page, projectRoot: projectRoot ? path.resolve(projectRoot) : null }
  tabs.set(tab, entry)
  page.on('console', (msg) => console.error(`[${tab}:${msg.type()}] ${msg.text()}`))
  page.on('pageerror', (err) => console.error(`[${tab}:pageerror] ${err.message}`))
  page.on('requestfailed', (req) => console.error(`[${tab}:requestfailed] ${req.url()} ${req.failure()?.errorText}`))
  page.on('response', (res) => { if (res.status() >= 400) console.error(`[${tab}:http ${res.status()}] ${res.url()}`) })
  let projectBase = null
  if (entry.projectRoot) {
    const key = crypto.randomBytes(8).toString('hex')
    projects.set(key, entry.projectRoot)
    entry.projectKey = key
    projectBase = `${baseUrl}/project/${key}/`
    await page.exposeFunction('mrmdTestSaveAsset', (request) => saveAsset(entry.projectRoot, request))
  }
  await page.goto(baseUrl + '/', { waitUntil: 'load' })
  return page.evaluate((opts) => window.mrmdTest.open(opts), { syncUrl, doc, runtimeUrl, monitor: !!monitor, projectBase })
}

const closeTab = async ({ tab }) => {
  const entry = tabOf(tab)
  tabs.delete(tab)
  if (entry.projectKey) projects.delete(entry.projectKey)
  await entry.page.close()
  return {}
}

const inPage = (tab, fn, arg) => tabOf(tab).page.evaluate(fn, arg)

const click = async (tab, selector, timeoutMs) => {
  const { page } = tabOf(tab)
  await page.bringToFront()
  const button = await page.waitForSelector(selector, { visible: true, timeout: timeoutMs })
  await button.click()
  await button.dispose()
}

const cellButton = (cell, which) => `.cm-cell-controls[data-cell-index="${Number(cell)}"] .cm-cell-controls-btn-${which}`

const waitInPage = async (tab, fn, arg, timeoutMs, what) => {
  try {
    await tabOf(tab).page.waitForFunction(fn, { timeout: timeoutMs, polling: 50 }, arg)
  } catch (err) {
    throw new Error(`${what} within ${timeoutMs} ms (${err.message})`)
  }
}

const commands = {
  ping: async () => ({}),
  open: openTab,
  close: closeTab,
  text: async ({ tab }) => ({ text: await inPage(tab, () => window.mrmdTest.text()) }),
  setText: async ({ tab, text }) => { await inPage(tab, (t) => window.mrmdTest.setText(t), text); return {} },
  run: async ({ tab, cell, timeoutMs = 10000 }) => { await click(tab, cellButton(cell, 'play'), timeoutMs); return {} },
  stop: async ({ tab, cell, timeoutMs = 10000 }) => { await click(tab, cellButton(cell, 'stop'), timeoutMs); return {} },
  runAll: async ({ tab, timeoutMs = 10000 }) => {
    const { page } = tabOf(tab)
    await page.bringToFront()
    // As a user: click into the text (its first line), then the keys.
    await page.click('#editor .cm-content .cm-line')
    await waitInPage(tab, () => window.mrmdTest.cursor().focused, null, timeoutMs, 'the editor did not take the focus')
    await page.keyboard.down('Control')
    await page.keyboard.down('Shift')
    await page.keyboard.press('Enter')
    await page.keyboard.up('Shift')
    await page.keyboard.up('Control')
    return {}
  },
  answerStdin: async ({ tab, text, timeoutMs = 10000 }) => {
    const { page } = tabOf(tab)
    await page.bringToFront()
    await waitInPage(tab, () => {
      const c = window.mrmdTest.cursor()
      return c.focused && c.line === '' && (c.lineBefore || '').startsWith('```stdin:')
    }, null, timeoutMs, 'the editor did not put the cursor in a stdin block')
    await page.keyboard.type(text)
    await page.keyboard.press('Enter')
    return {}
  },
  rendered: async ({ tab, park = true }) => inPage(tab, (p) => window.mrmdTest.rendered({ park: p }), park),
  cells: async ({ tab }) => ({ cells: await inPage(tab, () => window.mrmdTest.cells()) }),
  collaborators: async ({ tab }) => ({ collaborators: await inPage(tab, () => window.mrmdTest.collaborators()) }),
  cursor: async ({ tab }) => ({ cursor: await inPage(tab, () => window.mrmdTest.cursor()) }),
  executions: async ({ tab }) => ({ executions: await inPage(tab, () => window.mrmdTest.executions()) }),
  monitorAvailable: async ({ tab }) => ({ available: await inPage(tab, () => window.mrmdTest.monitorAvailable()) })
}

// ---------------------------------------------------------------- main loop
let quitting = false
const quit = async (code) => {
  if (quitting) return
  quitting = true
  try {
    if (browser) await browser.close()
  } catch (err) {
    log('closing the browser failed:', err.message)
  }
  server.close()
  process.exit(code)
}
process.on('SIGTERM', () => quit(0))
process.on('SIGINT', () => quit(0))

const handle = async (line) => {
  let msg
  try {
    msg = JSON.parse(line)
  } catch (err) {
    log('not JSON:', line)
    return
  }
  const { id, cmd, ...args } = msg
  if (cmd === 'quit') {
    out({ id, ok: true })
    return quit(0)
  }
  const fn = commands[cmd]
  try {
    if (!fn) throw new Error(`unknown command ${cmd}`)
    out({ id, ok: true, ...(await fn(args)) })
  } catch (err) {
    out({ id, ok: false, error: String(err && err.stack ? err.stack : err) })
  }
}

try {
  await launch()
} catch (err) {
  log('could not start chromium:', err.stack || err)
  await quit(1)
}
const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
// Commands run concurrently: a slow one (a wait) does not hold up the others.
rl.on('line', (line) => { handle(line) })
rl.on('close', () => quit(0))
