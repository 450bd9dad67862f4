#!/usr/bin/env node
// mrmd-monitor for launchers that run `node <packages>/mrmd-monitor/bin/cli.js`
// (mrmd-orchestrator 0.2.0; mrmd 0.10.1 with --packages or MRMD_PACKAGES_DIR).
// It runs the Python mrmd-monitor with the same arguments, on the same stdout
// and stderr, passes TERM, INT and HUP on, and ends as it ended.
//
// Which mrmd-monitor: `$MRMD_MONITOR_PYTHON -m mrmd_monitor` when that variable
// names a Python with mrmd-monitor installed; else the first `mrmd-monitor` on
// PATH that is not this file.
'use strict';

const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const FORWARDED = ['SIGTERM', 'SIGINT', 'SIGHUP'];

function isSelf(candidate) {
  try {
    return fs.realpathSync(candidate) === fs.realpathSync(__filename);
  } catch (err) {
    return false;
  }
}

function onPath(name) {
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
    } catch (err) {
      continue;
    }
    if (!isSelf(candidate)) return candidate;
  }
  return null;
}

function command(args) {
  const python = process.env.MRMD_MONITOR_PYTHON;
  if (python) return [python, ['-m', 'mrmd_monitor', ...args]];
  const found = onPath('mrmd-monitor');
  return found ? [found, args] : null;
}

const found = command(process.argv.slice(2));
if (found === null) {
  process.stderr.write('mrmd-monitor shim: no Python mrmd-monitor found: set MRMD_MONITOR_PYTHON ' +
                       'to a Python that has it installed, or put mrmd-monitor on PATH\n');
  process.exit(127);
}

const child = spawn(found[0], found[1], { stdio: 'inherit' });
// Until the child exits, a signal to us is passed on, never the end of us: the
// monitor decides how it stops (runs get their grace, then are marked final).
for (const sig of FORWARDED) {
  process.on(sig, () => { child.kill(sig); });
}
child.on('error', (err) => {
  process.stderr.write(`mrmd-monitor shim: cannot run ${found[0]}: ${err.message}\n`);
  process.exit(127);
});
child.on('exit', (code, signal) => {
  if (signal) {
    // Die the same way, so the launcher sees what the monitor saw.
    for (const sig of FORWARDED) process.removeAllListeners(sig);
    process.kill(process.pid, signal);
    process.exit(128 + (os.constants.signals[signal] || 0));   // a signal Node ignores
  }
  process.exit(code);
});
