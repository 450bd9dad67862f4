// Runs the mrmd editor's own terminal buffer (TerminalBuffer and toAnsi(),
// taken verbatim from npm mrmd-electron 0.5.4's editor/mrmd.iife.js) on
// streams read as JSON from stdin: [[chunk, ...], ...]. Prints toAnsi() of each.
// Usage: node editor_terminal.mjs <path of mrmd.iife.js>
import { readFileSync } from 'node:fs';

const bundle = readFileSync(process.argv[2], 'utf8');
const from = bundle.indexOf('  // #region TYPES');
const to = bundle.indexOf('  // #endregion STYLE_OUTPUT_HELPERS');
if (from < 0 || to < from) throw new Error('the terminal buffer is not where mrmd-electron 0.5.4 has it');
const TerminalBuffer = new Function(bundle.slice(from, to) + '\nreturn TerminalBuffer;')();

const streams = JSON.parse(readFileSync(0, 'utf8'));
process.stdout.write(JSON.stringify(streams.map(chunks => {
  const buffer = new TerminalBuffer();
  for (const chunk of chunks) buffer.write(chunk);
  return buffer.toAnsi();
})));
