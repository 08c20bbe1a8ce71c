'use strict';
// Runs the stowage binary for the action: finds or builds it, turns the action's inputs into
// stowage flags, relays its log (warnings and errors become annotations) and writes the job
// summary.
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn, spawnSync } = require('child_process');
const gh = require('./runner');

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

// The binary: the stowage-bin input (a path or a command on PATH), else a build of the
// stowage checkout this action was downloaded with, cached under the runner's tool cache by
// a hash of the sources (ci-templates/shell/stowage-ci.sh bin does the work).
function findStowage() {
  const wanted = gh.input('stowage-bin');
  if (wanted) {
    const p = wanted.includes('/') ? path.resolve(wanted) : onPath(wanted);
    try {
      fs.accessSync(p, fs.constants.X_OK);
    } catch {
      throw new Error(`stowage-bin: ${wanted} is not an executable file`);
    }
    return p;
  }
  const cache =
    process.env.STOWAGE_BUILD_CACHE ||
    (process.env.RUNNER_TOOL_CACHE
      ? path.join(process.env.RUNNER_TOOL_CACHE, 'stowage')
      : path.join(os.homedir(), '.cache', 'stowage', 'bin'));
  const started = Date.now();
  gh.group('stowage: find or build the binary');
  const r = spawnSync('sh', [WRAPPER, 'bin'], {
    env: { ...process.env, STOWAGE_BUILD_CACHE: cache },
    stdio: ['ignore', 'pipe', 'inherit'],
    encoding: 'utf8',
  });
  gh.info(`stowage binary ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  gh.endGroup();
  if (r.error) throw new Error(`cannot run ${WRAPPER}: ${r.error.message}`);
  const lines = (r.stdout || '').trim().split('\n');
  const bin = lines[lines.length - 1];
  if (r.status !== 0 || !bin) throw new Error(`no stowage binary (stowage-ci.sh bin exited ${r.status})`);
  return bin;
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
  return env;
}

// Runs stowage; resolves to { code, outputs, log } where outputs holds its name=value lines and
// log its stderr lines. Warnings and errors are turned into annotations.
function run(bin, args) {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, ...inputEnv() };
    delete env.GITHUB_OUTPUT; // the action writes the outputs itself
    const child = spawn(bin, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const outputs = {};
    const log = [];
    let outBuf = '';
    let errBuf = '';
    const onOut = (line) => {
      const m = /^(cache-[a-z-]+)=(.*)$/.exec(line);
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

module.exports = { findStowage, commonArgs, inputEnv, run, exitMeaning, redactUrl, summary, code, html, lastInfo };
