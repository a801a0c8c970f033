// End-to-end test of `hsadb mcp` with the official MCP TypeScript SDK client
// (@modelcontextprotocol/sdk, pinned in package-lock.json). Spawns the real binary over stdio
// with the tiny random-weight test model (answers are noise; storage, retrieval, provenance,
// grants and the protocol are real), and checks every tool's success and failure, resources,
// scoping, read-only mode, keys-file grants, and malformed JSON-RPC input (raw writes).
//
//   node mcp_test.mjs HSADB_BINARY MODEL_DIR
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { McpError, LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/sdk/types.js';

const [BIN, MODEL] = process.argv.slice(2);
assert.ok(BIN && MODEL, 'usage: node mcp_test.mjs HSADB_BINARY MODEL_DIR');
const TMP = mkdtempSync(join(tmpdir(), 'hsadb-mcp-'));
const DB = join(TMP, 'db');
const CHUNK = 64;
let checks = 0;
const ok = (cond, msg) => { assert.ok(cond, msg); checks++; };
const eq = (a, b, msg) => { assert.deepStrictEqual(a, b, msg); checks++; };

async function connect(extra = [], env = {}) {
  const transport = new StdioClientTransport({
    command: BIN,
    args: ['--db', DB, '--model', MODEL, 'mcp', ...extra],
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
    stderr: 'pipe',
  });
  let log = '';
  transport.stderr?.on('data', (d) => { log += d; });
  const client = new Client({ name: 'hsadb-mcp-test', version: '1.0.0' });
  try {
    await client.connect(transport);
  } catch (e) {
    throw new Error(`hsadb mcp ${extra.join(' ')} did not start: ${e.message}\n${log}`);
  }
  return { client, log: () => log };
}

// A tool call that must succeed: returns its structured content (also checks the text block).
async function call(client, name, args) {
  const r = await client.callTool({ name, arguments: args });
  assert.ok(!r.isError, `${name} failed: ${JSON.stringify(r.content)}`);
  ok(r.content[0].type === 'text' && r.content[0].text.length > 0, `${name}: text content`);
  ok(r.structuredContent, `${name}: structuredContent`);
  return r.structuredContent;
}

// A tool call that must fail as a tool error (isError), with `re` in its text.
async function callErr(client, name, args, re) {
  const r = await client.callTool({ name, arguments: args });
  ok(r.isError === true, `${name}(${JSON.stringify(args)}) should fail: ${JSON.stringify(r)}`);
  ok(re.test(r.content[0].text), `${name}: error text ${JSON.stringify(r.content[0].text)} !~ ${re}`);
  return r.content[0].text;
}

// A request that must fail with a JSON-RPC error of `code`.
async function rpcErr(promise, code, what) {
  try {
    await promise;
  } catch (e) {
    ok(e instanceof McpError, `${what}: McpError, got ${e}`);
    eq(e.code, code, `${what}: error code (${e.message})`);
    return e;
  }
  assert.fail(`${what}: expected JSON-RPC error ${code}`);
}

function cliRead(name) {
  return execFileSync(BIN, ['--db', DB, '--model', MODEL, 'read', name]);
}

// ---- 1. the full server: every tool, resources, protocol errors through the SDK --------------

async function fullServer() {
  const { client, log } = await connect(['--allow-forget']);
  eq(client.getServerVersion().name, 'hsadb', 'serverInfo.name');
  ok(client.getServerCapabilities().tools, 'tools capability');
  ok(client.getServerCapabilities().resources, 'resources capability');
  await client.ping();

  const tools = (await client.listTools()).tools;
  eq(tools.map((t) => t.name).sort(), ['forget', 'list_memories', 'recall', 'remember', 'search']);
  for (const t of tools) {
    ok(t.inputSchema.type === 'object' && t.description, `${t.name}: schema and description`);
    ok(t.outputSchema?.type === 'object', `${t.name}: outputSchema`);
  }

  // remember: creates the memory, appends (with a newline), reports provenance
  const texts = [
    'The user lives in Lisbon and works as a marine biologist at the aquarium.',
    'Remember: the pass key for the lab door is 71432. '.repeat(6),
    'The user is allergic to peanuts; recommend restaurants accordingly.\n',
  ];
  let stream = '';
  const META = { source: 'chat', session: 's-42', role: 'user' };   // on the pass-key append
  for (const [i, t] of texts.entries()) {
    const r = await call(client, 'remember', i === 1 ? { memory: 'notes', text: t, metadata: META } : { memory: 'notes', text: t });
    const stored = t.endsWith('\n') ? t : t + '\n';
    stream += stored;
    eq([r.memory, r.append_id, r.bytes, r.total_bytes, r.created],
       ['notes', i + 1, Buffer.byteLength(stored), Buffer.byteLength(stream), i === 0]);
    eq(r.total_chunks, Math.floor(Buffer.byteLength(stream) / CHUNK), 'total_chunks');
  }
  eq(cliRead('notes').toString(), stream, 'the memory holds exactly what was remembered');
  await callErr(client, 'remember', { memory: 'bad/name', text: 'x' }, /invalid memory name/);
  await callErr(client, 'remember', { memory: 'notes' }, /missing argument 'text'/);
  await callErr(client, 'remember', { memory: 'notes', text: '' }, /empty/);
  await callErr(client, 'remember', { memory: 'notes', text: 5 }, /must be a string/);
  await callErr(client, 'remember', { memory: 'notes', text: 'x'.repeat((4 << 20) + 1) }, /at most 4194304 per call/);
  await callErr(client, 'remember', { memory: 'fresh', text: 'x', extra: 1 }, /unknown argument 'extra'/);
  await callErr(client, 'remember', { memory: 'notes', text: 'x', metadata: { source: 'v'.repeat(1025) } }, /at most 1024/);
  await callErr(client, 'remember', { memory: 'notes', text: 'x', metadata: { 'bad key': 'v' } }, /metadata key 'bad key'/);
  await callErr(client, 'remember', { memory: 'notes', text: 'x', metadata: { n: 5 } }, /must be a string/);
  await callErr(client, 'remember', { memory: 'notes', text: 'x', metadata: 'source=chat' }, /must be an object/);
  await callErr(client, 'remember', { memory: 'newmem', text: 'x', metadata: { 'a/b': 'v' } }, /metadata key/);
  eq(cliRead('notes').toString(), stream, 'failed remembers stored nothing');

  // list_memories
  await call(client, 'remember', { memory: 'scratch', text: 'temporary' });
  let mems = (await call(client, 'list_memories', {})).memories;
  eq(mems.map((m) => m.name), ['notes', 'scratch']);
  eq(mems[0].n_bytes, Buffer.byteLength(stream));
  eq(mems[0].n_appends, 3);
  await callErr(client, 'list_memories', { page: 2 }, /unknown argument 'page'/);

  // search: hits with provenance; each hit's text is the stored bytes at its offset
  const buf = Buffer.from(stream);
  const s = await call(client, 'search', { memory: 'notes', question: 'What is the pass key?', k: 3 });
  eq(s.hits.length, 3, 'k hits');
  const tailAt = Math.floor(buf.length / CHUNK) * CHUNK;
  const checkChunk = (h) => {
    eq(h.byte_offset, h.chunk * CHUNK);
    if (h.persisted) {   // a stored chunk: its bytes and the append that wrote them
      ok(h.append_id >= 1 && h.append_id <= 3, `provenance: ${JSON.stringify(h)}`);
      eq(h.metadata, h.append_id === 2 ? META : undefined, `metadata of append ${h.append_id}`);
      eq(h.text, buf.subarray(h.byte_offset, h.byte_offset + CHUNK).toString('utf8'), 'chunk text = stored bytes');
    } else {             // the chunk the question completed: the memory's tail, then the question
      eq([h.byte_offset, h.append_id], [tailAt, 0]);
      ok(h.text.startsWith(buf.subarray(tailAt).toString('utf8')), `tail chunk: ${JSON.stringify(h)}`);
    }
  };
  s.hits.forEach(checkChunk);
  ok(s.hits.filter((h) => h.persisted).length >= 2, 'search finds stored chunks');
  const all = await call(client, 'search', { memory: 'notes', question: 'pass key', k: 100 });
  ok(all.hits.some((h) => h.append_id === 2 && h.metadata?.session === 's-42'), 'hits carry their append\'s metadata');
  for (let i = 1; i < s.hits.length; i++) ok(s.hits[i - 1].score >= s.hits[i].score, 'hits sorted');
  await callErr(client, 'search', { memory: 'nosuch', question: 'q' }, /not found/);
  await callErr(client, 'search', { memory: 'notes', question: 'q', k: 0 }, /'k' must be in 1\.\.1024/);
  await callErr(client, 'search', { memory: 'notes', question: '' }, /'question' must be/);

  // recall: an answer and the evidence, every persisted chunk the stored bytes
  const a = await call(client, 'recall', { memory: 'notes', question: 'What is the pass key?', max_tokens: 12, evidence_k: 2 });
  ok(typeof a.answer === 'string' && a.n_tokens >= 1 && a.n_tokens <= 12, 'answer');
  ok(['eos', 'max_tokens'].includes(a.stop), 'stop');
  ok(a.evidence.length >= 1, 'evidence layers');
  let persisted = 0;
  for (const l of a.evidence) {
    ok(l.chunks.length <= 2, 'evidence_k per layer');
    l.chunks.forEach(checkChunk);
    persisted += l.chunks.filter((c) => c.persisted).length;
  }
  ok(persisted > 0, 'recall cites stored chunks');
  await callErr(client, 'recall', { memory: 'notes', question: 'q', max_tokens: 0 }, /max_tokens/);
  await callErr(client, 'recall', { memory: 'nosuch', question: 'q' }, /not found/);

  // cancellation: an aborted recall stops generating, is not answered, and the server goes on
  const ac = new AbortController();
  const started = Date.now();
  const pending = client.callTool({ name: 'recall', arguments: { memory: 'notes', question: 'tell me everything', max_tokens: 4096 } },
                                  undefined, { signal: ac.signal, timeout: 120000 });
  setTimeout(() => ac.abort(new Error('test abort')), 300);
  await assert.rejects(pending, /abort/i);
  await client.ping();
  for (let i = 0; i < 100 && !/no response/.test(log()); i++) await new Promise((r) => setTimeout(r, 50));
  ok(/request cancelled by the client: no response/.test(log()), `server saw the cancellation: ${log().slice(-500)}`);
  const last = [...log().matchAll(/recall: memory=notes tokens=(\d+) stop=(\w+)/g)].pop();
  ok(last && last[2] === 'cancelled' && Number(last[1]) < 4096, `generation stopped early: ${last}`);
  ok(Date.now() - started < 60000, 'cancelled well before 4096 tokens');

  // forget: deletes a whole memory, only with confirm
  await callErr(client, 'forget', { memory: 'scratch', confirm: false }, /confirm/);
  await callErr(client, 'forget', { memory: 'nosuch', confirm: true }, /not found/);
  eq(await call(client, 'forget', { memory: 'scratch', confirm: true }), { memory: 'scratch', deleted: true });
  mems = (await call(client, 'list_memories', {})).memories;
  eq(mems.map((m) => m.name), ['notes'], 'forgotten memory is gone');

  // resources
  const res = (await client.listResources()).resources;
  eq(res.map((r) => r.uri), ['hsadb://memory/notes']);
  eq(res[0].size, Buffer.byteLength(stream));
  const tmpl = (await client.listResourceTemplates()).resourceTemplates;
  eq(tmpl[0].uriTemplate, 'hsadb://memory/{name}');
  const rd = await client.readResource({ uri: 'hsadb://memory/notes' });
  eq(rd.contents[0].text, stream, 'resource = the memory');
  await rpcErr(client.readResource({ uri: 'hsadb://memory/nosuch' }), -32002, 'unknown resource');
  await rpcErr(client.readResource({ uri: 'file:///etc/passwd' }), -32002, 'foreign uri');

  // protocol errors through the SDK
  await rpcErr(client.callTool({ name: 'no_such_tool', arguments: {} }), -32602, 'unknown tool');
  await rpcErr(client.listTools({ cursor: 'bogus' }), -32602, 'bad cursor');
  await client.close();
  ok(/remember: memory=notes/.test(log()), 'server logs calls on stderr');
}

// ---- 2. scope, read-only, keys -------------------------------------------------------------

async function scoped() {
  // read-only, one memory: remember/forget are not offered and refuse; other memories hidden
  let { client } = await connect(['--read-only', '--memory', 'notes']);
  let names = (await client.listTools()).tools.map((t) => t.name).sort();
  eq(names, ['list_memories', 'recall', 'search'], 'read-only tool list');
  await rpcErr(client.callTool({ name: 'remember', arguments: { memory: 'notes', text: 'x' } }), -32602, 'remember hidden');
  eq((await call(client, 'list_memories', {})).memories.map((m) => m.name), ['notes']);
  await client.close();

  ({ client } = await connect(['--memory', 'other']));
  await call(client, 'remember', { memory: 'other', text: 'scoped text' });
  await callErr(client, 'remember', { memory: 'notes', text: 'x' }, /not served here/);
  await callErr(client, 'search', { memory: 'notes', question: 'q' }, /not served here/);
  eq((await call(client, 'list_memories', {})).memories.map((m) => m.name), ['other']);
  eq((await client.listResources()).resources.map((r) => r.uri), ['hsadb://memory/other']);
  await rpcErr(client.readResource({ uri: 'hsadb://memory/notes' }), -32002, 'out-of-scope resource');
  await client.close();

  // keys file: the key's grants apply (read on notes only)
  const hash = (k) => execFileSync(BIN, ['serve', '--hash-key', k]).toString().trim();
  const keys = join(TMP, 'keys');
  writeFileSync(keys, `${hash('reader-key')} read notes\n${hash('writer-key')} write *\n`);
  ({ client } = await connect(['--keys', keys], { HSADB_KEY: 'reader-key' }));
  eq((await call(client, 'list_memories', {})).memories.map((m) => m.name), ['notes'], 'grants filter the list');
  await call(client, 'search', { memory: 'notes', question: 'pass key', k: 1 });
  await callErr(client, 'remember', { memory: 'notes', text: 'x' }, /no write grant/);
  await callErr(client, 'recall', { memory: 'other', question: 'q' }, /no read grant/);
  await client.close();
  ({ client } = await connect(['--keys', keys, '--key', 'writer-key', '--allow-forget']));
  await call(client, 'remember', { memory: 'other', text: 'more' });
  await callErr(client, 'forget', { memory: 'other', confirm: true }, /no admin grant/);
  await client.close();

  // a key that is not in the file: the server refuses to start
  const p = spawn(BIN, ['--db', DB, '--model', MODEL, 'mcp', '--keys', keys, '--key', 'wrong'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let err = '';
  p.stderr.on('data', (d) => { err += d; });
  const code = await new Promise((r) => p.on('close', r));
  ok(code !== 0 && /not in the keys file/.test(err), `unknown key refused (exit ${code}: ${err})`);
}

// ---- 3. malformed input: raw lines on the server's stdin -----------------------------------

async function raw() {
  const p = spawn(BIN, ['--db', DB, '--model', MODEL, '-q', 'mcp'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  const responses = [];
  const waiters = [];
  p.stdout.on('data', (d) => {
    out += d;
    let i;
    while ((i = out.indexOf('\n')) >= 0) {
      const line = out.slice(0, i);
      out = out.slice(i + 1);
      responses.push(JSON.parse(line));   // every line the server writes is JSON
      while (waiters.length && waiters[0].n <= responses.length) waiters.shift().resolve();
    }
  });
  const until = (n) => new Promise((resolve) => {
    if (responses.length >= n) resolve(); else waiters.push({ n, resolve });
  });
  let expected = 0;
  async function send(line, check) {
    p.stdin.write(line + '\n');
    if (!check) return;
    await until(++expected);
    check(responses[expected - 1]);
  }
  const isErr = (code, id = null) => (r) => {
    eq(r.jsonrpc, '2.0');
    eq(r.id, id, `id of ${JSON.stringify(r)}`);
    eq(r.error?.code, code, `error code of ${JSON.stringify(r)}`);
    ok(typeof r.error.message === 'string' && r.error.message.length > 0, 'error message');
  };
  const init = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: LATEST_PROTOCOL_VERSION, capabilities: {}, clientInfo: { name: 'raw', version: '0' } } };

  await send(JSON.stringify({ jsonrpc: '2.0', id: 'early', method: 'tools/list' }), isErr(-32600, 'early'));
  await send(JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize', params: {} }), isErr(-32602, 0));
  await send(JSON.stringify(init), (r) => eq(r.result.protocolVersion, LATEST_PROTOCOL_VERSION));
  await send(JSON.stringify(init), isErr(-32600, 1));                     // initialize twice
  await send('{"jsonrpc":"2.0","method":"notifications/initialized"}');  // no answer
  await send('{not json', isErr(-32700));
  await send('', null);                                                  // blank line: ignored
  await send('[{"jsonrpc":"2.0","id":9,"method":"ping"}]', isErr(-32600)); // batch
  await send('"a string"', isErr(-32600));
  await send('{"id":2,"method":"ping"}', isErr(-32600, 2));             // no jsonrpc
  await send('{"jsonrpc":"1.0","id":3,"method":"ping"}', isErr(-32600, 3));
  await send('{"jsonrpc":"2.0","id":{"x":1},"method":"ping"}', isErr(-32600));
  await send('{"jsonrpc":"2.0","id":4}', isErr(-32600, 4));              // no method
  await send('{"jsonrpc":"2.0","id":5,"method":7}', isErr(-32600, 5));
  await send('{"jsonrpc":"2.0","id":6,"method":"no/such"}', isErr(-32601, 6));
  await send('{"jsonrpc":"2.0","id":7,"method":"tools/call","params":[1]}', isErr(-32602, 7));
  await send('{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{}}', isErr(-32602, 8));
  await send('{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"recall","arguments":"x"}}', isErr(-32602, 9));
  await send('{"jsonrpc":"2.0","id":10,"method":"resources/read","params":{}}', isErr(-32602, 10));
  await send('{"jsonrpc":"2.0","id":11,"method":"ping","id":12}', isErr(-32700)); // duplicate key
  await send('{"jsonrpc":"2.0","method":"no/such/notification"}');       // no answer
  await send('{"jsonrpc":"2.0","id":13,"result":{}}');                   // a response: ignored
  await send('x'.repeat(17 << 20), isErr(-32600));                       // over 16 MiB
  await send('{"jsonrpc":"2.0","id":"after","method":"ping"}', (r) => {
    eq(r.id, 'after');
    eq(r.result, {});
  });
  p.stdin.end();
  const code = await new Promise((r) => p.on('close', r));
  eq(code, 0, 'exit 0 at end of input');
  eq(responses.length, expected, 'no answer to notifications, responses or blank lines');
}

try {
  await fullServer();
  await scoped();
  await raw();
  console.log(`mcp_test: ${checks} checks passed`);
} finally {
  rmSync(TMP, { recursive: true, force: true });
}
