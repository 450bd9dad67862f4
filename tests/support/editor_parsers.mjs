// Runs the mrmd editor's own block parsers, taken verbatim from its built
// bundle (npm mrmd-electron 0.5.4, editor/mrmd.iife.js), on documents read
// as JSON from stdin: [{"text", "execId", "cellEnd"}]. Prints, for each, what
// findOutputBlockByExecId, findOutputBlock and findCodeBlocks return.
// Usage: node editor_parsers.mjs <path of mrmd.iife.js>
import { readFileSync } from 'node:fs';

const bundle = readFileSync(process.argv[2], 'utf8');
const from = bundle.indexOf('  const EXECUTABLE_LANGUAGES = new Set([');
const last = bundle.indexOf('  function findOutputBlockByExecId(');
const to = bundle.indexOf('\n  }\n', last) + 4;
if (from < 0 || last < from) throw new Error('the parsers are not where mrmd-electron 0.5.4 has them');
const parsers = new Function(bundle.slice(from, to) +
  '\nreturn {findCodeBlocks, findOutputBlock, findOutputBlockByExecId};')();

const cases = JSON.parse(readFileSync(0, 'utf8'));
const out = cases.map(({ text, execId, cellEnd }) => ({
  byExecId: parsers.findOutputBlockByExecId(text, execId),
  afterCell: cellEnd == null ? null : parsers.findOutputBlock(text, cellEnd),
  cells: parsers.findCodeBlocks(text).map(b => ({ language: b.language, start: b.start, end: b.end, code: b.code })),
}));
process.stdout.write(JSON.stringify(out));
