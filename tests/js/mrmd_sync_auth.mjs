// mrmd-sync used as a library, with an auth hook, as an mrmd deployment does:
//   node mrmd_sync_auth.mjs --port P [--no-persist] DIR
// MRMD_SYNC_DIR: the installed copy of mrmd-sync (tests/.work/mrmd-sync).
// AUTH_TOKEN: the token that may read and write; AUTH_READONLY_TOKEN: a token
// that may only read (the hook returns {readOnly: true}: mrmd-sync then drops
// the client's document updates). No token or another one: refused (close 1008).
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const args = process.argv.slice(2);
const options = { port: 4444, persistYjsState: true, logLevel: 'info', dir: '.' };
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--port') options.port = Number(args[++i]);
  else if (args[i] === '--no-persist') options.persistYjsState = false;
  else options.dir = args[i];
}

function tokenOf(req) {
  const header = req.headers.authorization || '';
  if (header.startsWith('Bearer ')) return header.slice('Bearer '.length);
  const url = new URL(req.url, 'http://localhost');
  return url.searchParams.get('token');
}

const { createServer } = await import(pathToFileURL(join(process.env.MRMD_SYNC_DIR, 'src', 'index.js')));
options.auth = async (req, docName) => {
  const token = tokenOf(req);
  if (token && token === process.env.AUTH_TOKEN) return true;
  if (token && token === process.env.AUTH_READONLY_TOKEN) return { readOnly: true };
  return false;
};
const server = createServer(options);

// As bin/cli.js does: the library flushes on SIGTERM but leaves exiting to us.
let stopping = false;
const shutdown = async () => {
  if (stopping) return;
  stopping = true;
  try {
    await server.close();
    process.exit(0);
  } catch (err) {
    console.error('Error during shutdown:', err.message);
    process.exit(1);
  }
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
