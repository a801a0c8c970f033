// Throughput of the reference (Hugging Face tokenizers via npm) on the workload of
// bench/bench_tokenizer.c: the same documents, the same ids hash.
//   node tests/tokenizer/bench_reference.mjs TOKENIZER.json CORPUS [DOC_BYTES]
// "sequential": one encode() at a time; "batch": encodeBatch() of all documents (Rust threads on
// every core).
import fs from 'node:fs';
import tk from 'tokenizers';

const [file, corpusPath, docArg] = process.argv.slice(2);
const docBytes = Number(docArg || 16384);
const text = fs.readFileSync(corpusPath);
const docs = [];
for (let off = 0; off < text.length;) {
  let end = Math.min(off + docBytes, text.length);
  while (end < text.length && text[end - 1] !== 0x0a) end++;
  docs.push(text.subarray(off, end).toString('utf8'));
  off = end;
}
const tok = tk.Tokenizer.fromFile(file);
const opts = { addSpecialTokens: false };
const hashOf = (encs) => {
  let h = 0xcbf29ce484222325n, n = 0; const M = (1n << 64n) - 1n;
  for (const e of encs) {
    let d = 0xcbf29ce484222325n;
    for (const id of e.getIds()) { d = ((d ^ BigInt(id)) * 0x100000001b3n) & M; n++; }
    h = ((h ^ d) * 0x100000001b3n) & M;
  }
  return [n, h.toString(16).padStart(16, '0')];
};
// best of 3 in wall time and in CPU time (user + system of this process, every thread)
const time = async (f) => {
  let best = Infinity, bestCpu = Infinity, out;
  for (let r = 0; r < 3; r++) {
    const t0 = process.hrtime.bigint(), c0 = process.cpuUsage();
    out = await f();
    const c = process.cpuUsage(c0);
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
    bestCpu = Math.min(bestCpu, (c.user + c.system) / 1e6);
  }
  return [best, bestCpu, out];
};
const [tSeq, cSeq, encs] = await time(async () => { const o = []; for (const d of docs) o.push(await tok.encode(d, null, opts)); return o; });
const [tBatch, cBatch, encs2] = await time(() => tok.encodeBatch(docs, opts));
const [n, h] = hashOf(encs); const [n2, h2] = hashOf(encs2);
if (n !== n2 || h !== h2) throw new Error('batch and sequential ids differ');
const mb = text.length / 1e6;
console.log(`reference: ${text.length} bytes, ${docs.length} documents: sequential ${(mb / tSeq).toFixed(2)} MB/s (${tSeq.toFixed(3)} s, ` +
  `${(mb / cSeq).toFixed(2)} MB per CPU second), batch ${(mb / tBatch).toFixed(2)} MB/s (${tBatch.toFixed(3)} s, ${(mb / cBatch).toFixed(2)} MB per CPU second), ` +
  `${n} ids, ${(text.length / n).toFixed(2)} bytes/id, hash ${h}`);
