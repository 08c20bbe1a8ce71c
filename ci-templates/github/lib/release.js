'use strict';
// The released stowage artifact for the action: which one fits this runner (the checksum list
// committed beside the action, ci-templates/checksums.txt), where it already sits in the tool
// cache, and the download, sha256 check and unpacking of it. Node's own http/https, crypto and
// the system tar (spawned with an argv, no shell); no npm dependencies.
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const http = require('http');
const https = require('https');
const { spawn } = require('child_process');

const CHECKSUMS = path.join(__dirname, '..', '..', 'checksums.txt');
const MAX_BYTES = 512 * 1024 * 1024; // the tarball is ~8 MB; anything this big is not ours
const TIMEOUT_MS = 30000; // no byte for this long: give up (then the source build is tried)
const MAX_REDIRECTS = 5; // GitHub answers with a redirect to its object store
const MARKER = '.stowage-release'; // written last: the tree is complete; holds the sha256

// A failure that means "this artifact must not be used" (never "try again elsewhere").
class ChecksumError extends Error {}

// The artifact arch for this runner, or '' when no Linux artifact can run here.
function runnerArch(platform = process.platform, arch = process.arch) {
  if (platform !== 'linux') return '';
  return { x64: 'x86_64', arm64: 'aarch64' }[arch] || '';
}

// Parses the committed list: { releaseUrl, entries: [{ version, arch, sha256, file }] }.
function readChecksums(file = CHECKSUMS) {
  let text;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if (e.code === 'ENOENT') return { releaseUrl: '', entries: [] };
    throw e;
  }
  const out = { releaseUrl: '', entries: [] };
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    let m = /^release-url\s+(https?:\/\/\S+)$/.exec(line);
    if (m) {
      out.releaseUrl = m[1];
      return;
    }
    m = /^([0-9a-f]{64}) [ *](stowage-([0-9][0-9A-Za-z.+~-]*)-linux-(x86_64|aarch64)\.tar\.gz)$/.exec(line);
    if (!m) throw new Error(`${path.basename(file)} line ${i + 1}: not "<sha256>  stowage-<version>-linux-<arch>.tar.gz"`);
    out.entries.push({ sha256: m[1], file: m[2], version: m[3], arch: m[4] });
  });
  return out;
}

// Version order: numeric fields compared as numbers, a pre-release (0.2.0-rc1) before its release.
function compareVersions(a, b) {
  const split = (v) => {
    const [main, pre] = v.split(/-(.*)/s);
    return { main: main.split('.').map((x) => (/^\d+$/.test(x) ? Number(x) : x)), pre: pre || '' };
  };
  const x = split(a);
  const y = split(b);
  for (let i = 0; i < Math.max(x.main.length, y.main.length); i++) {
    const p = x.main[i] === undefined ? 0 : x.main[i];
    const q = y.main[i] === undefined ? 0 : y.main[i];
    if (p !== q) return typeof p === 'number' && typeof q === 'number' ? p - q : String(p) < String(q) ? -1 : 1;
  }
  if (x.pre === y.pre) return 0;
  if (!x.pre) return 1;
  if (!y.pre) return -1;
  return x.pre < y.pre ? -1 : 1;
}

// The entry to use for `wanted` ('' = the newest listed) on `arch`, or { entry: null, why }.
function pick(list, wanted, arch) {
  if (!arch) return { entry: null, why: `no release artifact for ${process.platform}/${process.arch}` };
  const forArch = list.entries.filter((e) => e.arch === arch);
  if (wanted) {
    const e = forArch.find((x) => x.version === wanted.replace(/^v/, ''));
    return e ? { entry: e } : { entry: null, why: `no checksum for stowage ${wanted} on ${arch} in ${path.basename(CHECKSUMS)}` };
  }
  if (forArch.length === 0) return { entry: null, why: `no release listed for ${arch} in ${path.basename(CHECKSUMS)}` };
  return { entry: forArch.reduce((a, b) => (compareVersions(a.version, b.version) >= 0 ? a : b)) };
}

const releaseDir = (root, entry) => path.join(root, entry.version, entry.arch);

// bin/stowage of an unpacked, complete release in the tool cache, or ''.
function cached(root, entry) {
  const dir = releaseDir(root, entry);
  try {
    if (fs.readFileSync(path.join(dir, MARKER), 'utf8').trim() !== entry.sha256) return '';
    const bin = path.join(dir, 'bin', 'stowage');
    fs.accessSync(bin, fs.constants.X_OK);
    return bin;
  } catch {
    return '';
  }
}

// Downloads url into file (following redirects), hashing on the way; resolves to
// { bytes, sha256 }.
function download(url, file, redirects = MAX_REDIRECTS) {
  return new Promise((resolve, reject) => {
    let u;
    try {
      u = new URL(url);
    } catch {
      reject(new Error(`not a URL: ${url}`));
      return;
    }
    const lib = u.protocol === 'https:' ? https : u.protocol === 'http:' ? http : null;
    if (!lib) {
      reject(new Error(`unsupported URL scheme ${u.protocol} (http or https)`));
      return;
    }
    const req = lib.get(u, { headers: { 'user-agent': 'stowage-action', accept: 'application/octet-stream' } }, (res) => {
      const status = res.statusCode;
      if ([301, 302, 303, 307, 308].includes(status) && res.headers.location) {
        res.resume();
        if (redirects <= 0) {
          reject(new Error(`too many redirects from ${url}`));
          return;
        }
        const next = new URL(res.headers.location, u).toString();
        download(next, file, redirects - 1).then(resolve, reject);
        return;
      }
      if (status !== 200) {
        res.resume();
        reject(new Error(`HTTP ${status} from ${u.origin}${u.pathname}`));
        return;
      }
      if (Number(res.headers['content-length'] || 0) > MAX_BYTES) {
        res.destroy();
        reject(new Error(`${u.pathname}: larger than ${MAX_BYTES} bytes`));
        return;
      }
      const hash = crypto.createHash('sha256');
      const out = fs.createWriteStream(file, { mode: 0o600 });
      let bytes = 0;
      let failed = false;
      const fail = (e) => {
        if (failed) return;
        failed = true;
        res.destroy();
        out.destroy();
        reject(e);
      };
      res.on('data', (chunk) => {
        bytes += chunk.length;
        if (bytes > MAX_BYTES) fail(new Error(`${u.pathname}: larger than ${MAX_BYTES} bytes`));
        else hash.update(chunk);
      });
      res.on('error', fail);
      res.on('aborted', () => fail(new Error(`the connection to ${u.host} was closed early`)));
      out.on('error', fail);
      out.on('finish', () => {
        if (!failed) resolve({ bytes, sha256: hash.digest('hex') });
      });
      res.pipe(out);
    });
    req.setTimeout(TIMEOUT_MS, () => req.destroy(new Error(`no answer from ${u.host} in ${TIMEOUT_MS / 1000} s`)));
    req.on('error', reject);
  });
}

function runChild(cmd, args) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('error', (e) => resolve({ code: 127, out: e.message }));
    child.on('close', (code) => resolve({ code: code === null ? 128 : code, out }));
  });
}

// Downloads entry from base, checks its sha256 against the committed one, unpacks it into
// <root>/<version>/<arch>/ and returns bin/stowage there. A wrong sha256 throws a
// ChecksumError and leaves nothing behind: the bytes are neither unpacked nor run.
async function fetchRelease(root, entry, base) {
  const versionDir = path.join(root, entry.version);
  fs.mkdirSync(versionDir, { recursive: true });
  const url = `${base.replace(/\/+$/, '')}/v${entry.version}/${entry.file}`;
  const tmp = fs.mkdtempSync(path.join(versionDir, `.${entry.arch}.tmp-`));
  try {
    const tarball = path.join(tmp, entry.file);
    const got = await download(url, tarball);
    if (got.sha256 !== entry.sha256) {
      throw new ChecksumError(
        `${entry.file} from ${new URL(url).origin} has sha256 ${got.sha256}, but the action's ` +
          `checksum list says ${entry.sha256}: refused, not run`,
      );
    }
    const tree = path.join(tmp, 'tree');
    fs.mkdirSync(tree);
    // The tarball holds stowage-<version>-linux-<arch>/{bin,lib,share}: unpack its content.
    const t = await runChild('tar', ['-xzf', tarball, '-C', tree, '--strip-components=1', '--no-same-owner']);
    if (t.code !== 0) throw new Error(`tar could not unpack ${entry.file}: ${t.out.trim()}`);
    const bin = path.join(tree, 'bin', 'stowage');
    const v = await runChild(bin, ['--version']);
    if (v.code !== 0) throw new Error(`the downloaded stowage does not run here: ${v.out.trim()}`);
    fs.writeFileSync(path.join(tree, MARKER), entry.sha256 + '\n');
    const dest = releaseDir(root, entry);
    try {
      fs.renameSync(tree, dest);
    } catch (e) {
      // Another job unpacked it first, or an incomplete tree is in the way.
      if (!cached(root, entry)) {
        fs.rmSync(dest, { recursive: true, force: true });
        fs.renameSync(tree, dest);
      }
    }
    return { bin: path.join(dest, 'bin', 'stowage'), bytes: got.bytes, url };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

module.exports = { CHECKSUMS, ChecksumError, runnerArch, readChecksums, compareVersions, pick, cached, fetchRelease, download };
