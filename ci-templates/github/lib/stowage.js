'use strict';
// Runs the stowage binary for the action: finds or builds it, turns the action's inputs into
// stowage flags, relays its log (warnings and errors become annotations) and writes the job
// summary.
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn, spawnSync } = require('child_process');
const gh = require('./runner');
const release = require('./release');
const trust = require('./trust');

const WRAPPER = path.join(__dirname, '..', '..', 'shell', 'stowage-ci.sh');

function onPath(name) {
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    const p = path.join(dir || '.', name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      if (fs.statSync(p).isFile()) return p;
    } catch {
      // not here
    }
  }
  return '';
}

// The binary could not be obtained (download refused or failed and no build possible): the
// action goes on without the cache unless strict is set.
class BootstrapError extends Error {}

function toolCacheRoot() {
  return (
    process.env.STOWAGE_BUILD_CACHE ||
    (process.env.RUNNER_TOOL_CACHE
      ? path.join(process.env.RUNNER_TOOL_CACHE, 'stowage')
      : path.join(os.homedir(), '.cache', 'stowage', 'bin'))
  );
}

// Where releases are downloaded from: the release-url input, STOWAGE_RELEASE_URL, the
// release-url of the checksum list (the repository whose release workflow wrote it), the
// releases of the repository this action came from (GitHub.com or Enterprise).
function releaseBase(list) {
  const input = gh.input('release-url');
  if (input) return input;
  if (process.env.STOWAGE_RELEASE_URL) return process.env.STOWAGE_RELEASE_URL;
  if (list.releaseUrl) return list.releaseUrl;
  if (process.env.GITHUB_ACTION_REPOSITORY)
    return `${process.env.GITHUB_SERVER_URL || 'https://github.com'}/${process.env.GITHUB_ACTION_REPOSITORY}/releases/download`;
  return '';
}

// Builds the stowage checkout this action was downloaded with (ci-templates/shell/stowage-ci.sh
// bin), cached in the tool cache by a hash of the sources; '' with the reason when it cannot.
function buildFromSource(root) {
  const r = spawnSync('sh', [WRAPPER, 'bin'], {
    env: { ...process.env, STOWAGE_BUILD_CACHE: root, STOWAGE_VERSION: 'source', STOWAGE_BIN: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
    encoding: 'utf8',
  });
  if (r.stderr) process.stderr.write(r.stderr);
  if (r.error) return { bin: '', why: `cannot run ${WRAPPER}: ${r.error.message}` };
  const lines = (r.stdout || '').trim().split('\n');
  const bin = lines[lines.length - 1];
  if (r.status !== 0 || !bin) {
    const last = (r.stderr || '').trim().split('\n').pop() || '';
    return { bin: '', why: `building from source failed (${last.replace(/^stowage-ci: (error: )?/, '') || `exit ${r.status}`})` };
  }
  return { bin };
}

// The binary: the stowage-bin input (a path or a command on PATH); else the release listed in
// the action's checksum list for this runner, from the tool cache or downloaded and verified
// into it; else a build of the action's own source. Resolves to { bin, how }; throws a
// BootstrapError when there is none (and a plain Error for a bad stowage-bin).
async function findStowage() {
  const wanted = gh.input('stowage-bin');
  if (wanted) {
    const p = wanted.includes('/') ? path.resolve(wanted) : onPath(wanted);
    try {
      fs.accessSync(p, fs.constants.X_OK);
    } catch {
      throw new Error(`stowage-bin: ${wanted} is not an executable file`);
    }
    return { bin: p, how: 'stowage-bin' };
  }
  const root = toolCacheRoot();
  const started = Date.now();
  const ready = (bin, how) => {
    gh.info(`stowage binary ready in ${Date.now() - started} ms (${how}): ${bin}`);
    return { bin, how };
  };
  gh.group('stowage: find, download or build the binary');
  try {
    const version = gh.input('version');
    let fallbackWhy = '';
    if (version !== 'source') {
      const list = release.readChecksums();
      const { entry, why } = release.pick(list, version, release.runnerArch());
      if (entry) {
        const hit = release.cached(root, entry);
        if (hit) return ready(hit, `stowage ${entry.version} from the tool cache`);
        const base = releaseBase(list);
        if (!base) {
          fallbackWhy = 'no release URL (set the release-url input or STOWAGE_RELEASE_URL)';
        } else {
          try {
            const got = await release.fetchRelease(root, entry, base);
            return ready(got.bin, `stowage ${entry.version} downloaded, ${got.bytes} bytes, sha256 verified`);
          } catch (e) {
            if (e instanceof release.ChecksumError) throw new BootstrapError(e.message);
            fallbackWhy = `could not download stowage ${entry.version}: ${e.message}`;
          }
        }
      } else {
        gh.info(`stowage: ${why}; building from source`);
      }
    }
    if (fallbackWhy) gh.info(`stowage: ${fallbackWhy}; building from source instead`);
    const b = buildFromSource(root);
    if (!b.bin) throw new BootstrapError(fallbackWhy ? `${fallbackWhy}; ${b.why}` : b.why);
    if (fallbackWhy) gh.warning(`${fallbackWhy}; built stowage from source instead`, 'stowage');
    return ready(b.bin, 'built from source');
  } finally {
    gh.endGroup();
  }
}

// Flags for the inputs that are set; unset ones leave STOWAGE_* variables and the config
// file in charge. The url input is not a flag: it may carry a password, and a command line is
// visible to every user of the machine in ps (see inputEnv).
function commonArgs(key) {
  const a = [];
  const config = gh.input('config');
  if (config) a.push('--config', config);
  for (const [inputName, flag] of [
    ['endpoint', '--endpoint'],
    ['region', '--region'],
  ]) {
    const v = gh.input(inputName);
    if (v) a.push(flag, v);
  }
  if (key) a.push('--key', key);
  for (const p of gh.inputList('path')) a.push('--path', p);
  for (const k of gh.inputList('restore-keys')) a.push('--restore-key', k);
  if (gh.inputBool('strict')) a.push('--strict');
  return a;
}

// BuildKit cache mounts (docs/BUILDKIT.md): wanted when the buildkit-mounts or dockerfile
// input is set, or the job's environment sets STOWAGE_BUILDKIT_MOUNTS or
// STOWAGE_BUILDKIT_DOCKERFILE (which stowage reads itself).
function mountsWanted() {
  return (
    gh.inputList('buildkit-mounts').length > 0 ||
    gh.input('dockerfile') !== '' ||
    !!process.env.STOWAGE_BUILDKIT_MOUNTS ||
    !!process.env.STOWAGE_BUILDKIT_DOCKERFILE
  );
}

// Flags for stowage mounts inject|extract.
function mountsArgs() {
  const a = [];
  const config = gh.input('config');
  if (config) a.push('--config', config);
  for (const m of gh.inputList('buildkit-mounts')) a.push('--buildkit-mount', m);
  const dockerfile = gh.input('dockerfile');
  if (dockerfile) a.push('--dockerfile', dockerfile);
  if (gh.inputBool('strict')) a.push('--strict');
  return a;
}

// Runs stowage mounts inject|extract; resolves to { code, done, log }. done: the transfer
// happened (stowage prints mounts-result=done; failed when docker or the builder failed,
// which is a warning unless strict).
async function mounts(bin, verb) {
  const r = await run(bin, ['mounts', verb, ...mountsArgs()]);
  return { code: r.code, done: r.code === 0 && r.outputs['mounts-result'] === 'done', log: r.log };
}

// Variables for the inputs passed through the environment: url as STOWAGE_URL (stowage's own
// precedence puts it above the config file, like the flag it replaces). A password in it is
// masked in the log first.
function inputEnv() {
  const env = {};
  const url = gh.input('url');
  if (url) {
    try {
      const pw = decodeURIComponent(new URL(url).password);
      if (pw) gh.setSecret(pw);
    } catch {
      // not a URL the WHATWG parser takes; stowage reports it
    }
    env.STOWAGE_URL = url;
  }
  // read-only for untrusted events, per-ref scopes (lib/trust.js, docs/TRUST.md)
  Object.assign(env, trust.env({ save: gh.input('save'), scope: gh.input('scope') }, gh.info));
  return env;
}

// Runs stowage (extraEnv: e.g. the web identity of lib/oidc.js); resolves to { code, outputs,
// log } where outputs holds its name=value lines and log its stderr lines. Warnings and errors
// are turned into annotations.
function run(bin, args, extraEnv = {}) {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, ...inputEnv(), ...extraEnv };
    delete env.GITHUB_OUTPUT; // the action writes the outputs itself
    const child = spawn(bin, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const outputs = {};
    const log = [];
    let outBuf = '';
    let errBuf = '';
    const onOut = (line) => {
      const m = /^((?:cache|mounts)-[a-z-]+)=(.*)$/.exec(line);
      if (m) outputs[m[1]] = m[2];
      gh.info(line);
    };
    const onErr = (line) => {
      log.push(line);
      const m = /^stowage: (warning|error): (.*)$/.exec(line);
      if (m && m[1] === 'warning') gh.warning(m[2], 'stowage');
      else if (m) gh.error(m[2], 'stowage');
      else process.stderr.write(line + os.EOL);
    };
    const splitter = (get, set, fn) => (chunk) => {
      const parts = (get() + chunk).split('\n');
      set(parts.pop());
      parts.forEach(fn);
    };
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', splitter(() => outBuf, (v) => (outBuf = v), onOut));
    child.stderr.on('data', splitter(() => errBuf, (v) => (errBuf = v), onErr));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (outBuf) onOut(outBuf);
      if (errBuf) onErr(errBuf);
      resolve({ code: code === null ? 128 + (os.constants.signals[signal] || 0) : code, outputs, log });
    });
  });
}

const EXIT_MEANING = {
  1: 'a storage or data error (strict mode)',
  2: 'a usage or configuration error',
  3: 'no cache entry matched (fail-on-cache-miss)',
};
const exitMeaning = (code) => EXIT_MEANING[code] || `exit status ${code}`;

// The store's address without credentials or query string, for the summary.
function redactUrl(url) {
  if (!url) return '';
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    u.search = '';
    u.hash = '';
    return u.toString();
  } catch {
    return '(unparsed URL)';
  }
}

const html = (s) =>
  String(s).replace(/[&<>"|]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', '|': '&#124;' })[c]);
const code = (s) => (s ? `<code>${html(s)}</code>` : '—');

// A two-column table in the job summary.
function summary(title, rows) {
  let md = `### ${title}\n\n| | |\n| --- | --- |\n`;
  for (const [k, v] of rows) md += `| ${k} | ${v} |\n`;
  gh.appendSummary(md + '\n');
}

// The last informational line of stowage's log (its own one-line summary), for the table.
function lastInfo(log) {
  for (let i = log.length - 1; i >= 0; i--) {
    if (/^stowage: /.test(log[i]) && !/^stowage: (debug|warning|error): /.test(log[i]))
      return log[i].replace(/^stowage: /, '');
  }
  return '';
}

module.exports = { BootstrapError, findStowage, commonArgs, mountsWanted, mounts, inputEnv, run, exitMeaning, redactUrl, summary, code, html, lastInfo };
