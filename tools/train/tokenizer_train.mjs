// Train hsadb's byte-level BPE vocabulary with Hugging Face tokenizers (npm binding) and write a
// tokenizer.json that tokenizer/bpe.c (and tools/train/bpe_c.py) read.
//
//   npm ci --prefix tests/tokenizer            # once: installs the pinned `tokenizers`
//   node tools/train/tokenizer_train.mjs --vocab-size 16384 --out tokenizer.json CORPUS [CORPUS...]
//
// Options:
//   --vocab-size N   total ids, added tokens included (default 16384; at most about 30,000, see below)
//   --pattern P      pre-tokenizer regex: cl100k (default; OLMo's dolma2 and Llama 3 use it: digits
//                    in groups of up to 3, a leading non-letter glued to words) or gpt2
//   --special LIST   comma-separated added tokens, ids after the vocabulary
//                    (default <bos>,<eos>,<query>,<answer>,<nomem>)
//   --out PATH       where to write tokenizer.json (default tokenizer.json)
//
// The binding's train() runs the reference BpeTrainer with its defaults (30,000 tokens, no way to
// set vocab_size from JavaScript); BPE training is greedy, so the first merges of that run are
// exactly what a smaller run learns. The vocabulary is the 256-byte alphabet (ids 0..255, in byte
// order) followed by the first merges' tokens up to N minus the added tokens.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(new URL('../../tests/tokenizer/package.json', import.meta.url));
let tk;
try { tk = require('tokenizers'); } catch {
  console.error('tokenizer_train: the npm package is missing: run `npm ci --prefix tests/tokenizer`');
  process.exit(2);
}

const PATTERNS = {
  gpt2: "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
  cl100k: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
};

function usage(msg) {
  if (msg) console.error(`tokenizer_train: ${msg}`);
  console.error('usage: node tools/train/tokenizer_train.mjs [--vocab-size N] [--pattern cl100k|gpt2] [--special A,B] [--out PATH] CORPUS...');
  process.exit(2);
}

const opts = { vocab: 16384, pattern: 'cl100k', special: '<bos>,<eos>,<query>,<answer>,<nomem>', out: 'tokenizer.json', files: [] };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i], val = () => { if (i + 1 >= argv.length) usage(`${a} needs a value`); return argv[++i]; };
  if (a === '--vocab-size') opts.vocab = Number(val());
  else if (a === '--pattern') opts.pattern = val();
  else if (a === '--special') opts.special = val();
  else if (a === '--out') opts.out = val();
  else if (a === '-h' || a === '--help') usage();
  else if (a.startsWith('--')) usage(`unknown option ${a}`);
  else opts.files.push(a);
}
if (!opts.files.length) usage('no corpus file');
for (const f of opts.files) if (!fs.existsSync(f)) usage(`${f}: no such file`);
if (!PATTERNS[opts.pattern]) usage(`unknown pattern ${opts.pattern} (cl100k or gpt2)`);
const specials = opts.special ? opts.special.split(',').filter(Boolean) : [];
const modelSize = opts.vocab - specials.length;
if (!Number.isInteger(opts.vocab) || modelSize < 257) usage(`--vocab-size must leave more than 256 tokens after ${specials.length} added ones`);

// the byte-level alphabet (GPT-2's bytes_to_unicode)
const BYTE_CP = []; { let n = 0; for (let b = 0; b < 256; b++) { const p = (b >= 33 && b <= 126) || (b >= 0xa1 && b <= 0xac) || b >= 0xae; BYTE_CP.push(p ? b : 256 + n++); } }

const pre = opts.pattern === 'gpt2'
  ? { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true }
  : { type: 'Sequence', pretokenizers: [
      { type: 'Split', pattern: { Regex: PATTERNS.cl100k }, behavior: 'Isolated', invert: false },
      { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false }] };
const shell = (vocab, merges, added) => ({
  version: '1.0', truncation: null, padding: null, added_tokens: added, normalizer: null, pre_tokenizer: pre,
  post_processor: null, decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
  model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
    fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges },
});

const t0 = Date.now();
const trainer = tk.Tokenizer.fromString(JSON.stringify(shell({}, [], [])));
trainer.train(opts.files);
const tmp = path.join(os.tmpdir(), `tokenizer_train.${process.pid}.json`);
trainer.save(tmp);
const trained = JSON.parse(fs.readFileSync(tmp, 'utf8'));
fs.unlinkSync(tmp);
const allMerges = trained.model.merges.map((m) => (typeof m === 'string' ? m.split(' ') : m));

const vocab = {}; let next = 0;
for (let b = 0; b < 256; b++) vocab[String.fromCodePoint(BYTE_CP[b])] = next++;
const merges = [];
for (const [a, b] of allMerges) {
  if (next >= modelSize) break;
  if (!(a in vocab) || !(b in vocab)) throw new Error(`trained merge ${a} ${b} uses an unknown token`);
  merges.push([a, b]);
  if (!(a + b in vocab)) vocab[a + b] = next++;
}
if (next < modelSize) {
  console.error(`tokenizer_train: the reference run learned ${next} tokens, fewer than the ${modelSize} asked ` +
    '(its default run stops at 30,000 tokens, or the corpus is too small)');
  process.exit(1);
}
const added = specials.map((content, k) => ({ id: modelSize + k, content, single_word: false, lstrip: false,
  rstrip: false, normalized: false, special: true }));
const text = JSON.stringify(shell(vocab, merges, added));
fs.writeFileSync(opts.out, text);

// check: the reference reads it back; bytes per token on the start of the corpus
const tok = tk.Tokenizer.fromString(text);
const sample = fs.readFileSync(opts.files[0]).subarray(0, 1 << 20).toString('utf8');
const ids = (await tok.encode(sample, null, { addSpecialTokens: false })).getIds();
console.log(`${opts.out}: ${tok.getVocabSize(true)} ids (${modelSize} BPE + ${specials.length} added: ${specials.join(' ')}), ` +
  `${merges.length} merges, ${opts.pattern} pre-tokenizer; ${(Buffer.byteLength(sample) / ids.length).toFixed(2)} bytes/token ` +
  `on the first MiB of ${opts.files[0]}; ${((Date.now() - t0) / 1000).toFixed(1)} s`);
