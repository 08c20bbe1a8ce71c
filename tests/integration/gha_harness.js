'use strict';
// Runs a JavaScript GitHub action the way the Actions runner does, for tests:
//   - INPUT_<NAME> from the action.yml defaults and --input NAME=VALUE (unknown inputs are an
//     error; the runner warns about them),
//   - fresh per-step files GITHUB_OUTPUT, GITHUB_STATE, GITHUB_ENV, GITHUB_PATH and
//     GITHUB_STEP_SUMMARY, parsed after the step (NAME=value and NAME<<DELIM forms),
//   - the main step, then an optional build step (--build 'shell command'; its status is the
//     job status, or --cancel), then the post step when post-if holds, with the main step's
//     state as STATE_<name> and its GITHUB_ENV exports in the environment,
//   - each step's wall time (durationMs), and the tool cache the runner provides
//     (RUNNER_TOOL_CACHE: inherited, else a fresh one per job),
//   - workflow commands on stdout collected (annotations); the deprecated set-output,
//     save-state, set-env and add-path commands are refused, as the runner does.
// Writes everything observed as JSON to --out.
//
// usage: node gha_harness.js --action DIR [--input NAME=VALUE]... [--env NAME=VALUE]...
//                            [--build CMD | --cancel] --out FILE
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');

const toolsDir = path.join(process.env.STOW_TEST_SRC || path.join(__dirname, '..', '..'), 'tests', 'ci-tools');
const yaml = require(path.join(toolsDir, 'node_modules', 'js-yaml'));

function die(msg) {
  process.stderr.write(`gha_harness: ${msg}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const a = { inputs: {}, env: {}, build: null, cancel: false, out: null, action: null };
  const kv = (s) => {
    const i = s.indexOf('=');
    if (i <= 0) die(`expected NAME=VALUE, got ${s}`);
    return [s.slice(0, i), s.slice(i + 1)];
  };
  for (let i = 0; i < argv.length; i++) {
    const next = () => (i + 1 < argv.length ? argv[++i] : die(`${argv[i]} needs a value`));
    switch (argv[i]) {
      case '--action': a.action = next(); break;
      case '--input': { const [k, v] = kv(next()); a.inputs[k] = v; break; }
      case '--env': { const [k, v] = kv(next()); a.env[k] = v; break; }
      case '--build': a.build = next(); break;
      case '--cancel': a.cancel = true; break;
      case '--out': a.out = next(); break;
      default: die(`unknown argument ${argv[i]}`);
    }
  }
  if (!a.action || !a.out) die('--action and --out are required');
  return a;
}

// The runner's file-command format: NAME=value, or NAME<<DELIM, lines, DELIM.
function parseFileCommands(file) {
  const text = fs.readFileSync(file, 'utf8');
  const lines = text.split(/\r?\n/);
  const out = {};
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line === '') continue;
    const h = line.indexOf('<<');
    const e = line.indexOf('=');
    if (h > 0 && (e < 0 || h < e)) {
      const name = line.slice(0, h);
      const delim = line.slice(h + 2);
      const value = [];
      let j = i + 1;
      while (j < lines.length && lines[j] !== delim) value.push(lines[j++]);
      if (j >= lines.length) throw new Error(`${path.basename(file)}: no closing delimiter ${delim} for ${name}`);
      out[name] = value.join('\n');
      i = j;
    } else if (e > 0) {
      out[line.slice(0, e)] = line.slice(e + 1);
    } else {
      throw new Error(`${path.basename(file)}: malformed line ${JSON.stringify(line)}`);
    }
  }
  return out;
}

function parseCommands(stdout) {
  const annotations = [];
  for (const line of stdout.split(/\r?\n/)) {
    const m = /^::([a-z-]+)( [^:]*)?::(.*)$/.exec(line);
    if (!m) continue;
    const [, name, props, msg] = m;
    if (['set-output', 'save-state', 'set-env', 'add-path'].includes(name))
      throw new Error(`deprecated workflow command ::${name}:: (the runner refuses it)`);
    if (['warning', 'error', 'notice'].includes(name)) {
      const p = {};
      for (const kv of (props || '').trim().split(',').filter(Boolean)) {
        const i = kv.indexOf('=');
        p[kv.slice(0, i)] = decodeURIComponent(kv.slice(i + 1));
      }
      annotations.push({ level: name, title: p.title || '', message: decodeURIComponent(msg) });
    }
  }
  return annotations;
}

// Values the step masked with ::add-mask::VALUE.
function parseMasks(stdout) {
  const masks = [];
  for (const line of stdout.split(/\r?\n/)) {
    const m = /^::add-mask::(.*)$/.exec(line);
    if (m) masks.push(decodeURIComponent(m[1]));
  }
  return masks;
}

// A small evaluator for post-if: ||, &&, !, parentheses, == and != (case-insensitive, as in
// Actions expressions), 'strings', env.NAME, and the status functions. Anything else is an
// error, so an unsupported expression cannot pass by accident.
function evaluate(expr, ctx) {
  const tokens = [];
  const re = /\s*(\|\||&&|==|!=|!|\(|\)|'(?:[^']|'')*'|[A-Za-z_][A-Za-z0-9_.-]*)/y;
  let pos = 0;
  while (pos < expr.length) {
    if (/^\s*$/.test(expr.slice(pos))) break;
    re.lastIndex = pos;
    const m = re.exec(expr);
    if (!m) throw new Error(`post-if: cannot parse at ${JSON.stringify(expr.slice(pos))}`);
    tokens.push(m[1]);
    pos = re.lastIndex;
  }
  let i = 0;
  let sawStatus = false;
  const peek = () => tokens[i];
  const take = (t) => {
    if (tokens[i] !== t) throw new Error(`post-if: expected ${t} at token ${i} (${tokens[i]})`);
    i++;
  };
  const truthy = (v) => v !== null && v !== false && v !== '' && v !== 0;
  function primary() {
    const t = tokens[i++];
    if (t === undefined) throw new Error('post-if: unexpected end');
    if (t === '(') { const v = or(); take(')'); return v; }
    if (t === '!') return !truthy(primary());
    if (t.startsWith("'")) return t.slice(1, -1).replace(/''/g, "'");
    if (tokens[i] === '(') {
      take('(');
      take(')');
      sawStatus = true;
      const status = { success: ctx.status === 'success', failure: ctx.status === 'failure',
        cancelled: ctx.status === 'cancelled', always: true }[t];
      if (status === undefined) throw new Error(`post-if: unsupported function ${t}()`);
      return status;
    }
    if (t === 'true') return true;
    if (t === 'false') return false;
    const m = /^env\.([A-Za-z_][A-Za-z0-9_]*)$/.exec(t);
    if (m) return Object.prototype.hasOwnProperty.call(ctx.env, m[1]) ? ctx.env[m[1]] : null;
    throw new Error(`post-if: unsupported operand ${t}`);
  }
  function cmp() {
    let v = primary();
    while (peek() === '==' || peek() === '!=') {
      const op = tokens[i++];
      const r = primary();
      const eq = typeof v === 'string' && typeof r === 'string' ? v.toLowerCase() === r.toLowerCase() : v === r;
      v = op === '==' ? eq : !eq;
    }
    return v;
  }
  function and() {
    let v = cmp();
    while (peek() === '&&') { i++; const r = cmp(); v = truthy(v) ? r : v; }
    return v;
  }
  function or() {
    let v = and();
    while (peek() === '||') { i++; const r = and(); v = truthy(v) ? v : r; }
    return v;
  }
  const v = or();
  if (i !== tokens.length) throw new Error(`post-if: trailing tokens from ${tokens[i]}`);
  // Without a status function, the runner implies success() && (...).
  return sawStatus ? truthy(v) : ctx.status === 'success' && truthy(v);
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  const actionDir = path.resolve(args.action);
  const manifestFile = ['action.yml', 'action.yaml'].map((f) => path.join(actionDir, f)).find(fs.existsSync);
  if (!manifestFile) die(`no action.yml in ${actionDir}`);
  const manifest = yaml.load(fs.readFileSync(manifestFile, 'utf8'));
  const runs = manifest.runs || {};
  if (runs.using !== 'node20') die(`runs.using is ${runs.using}, expected node20`);
  const declared = manifest.inputs || {};
  for (const name of Object.keys(args.inputs))
    if (!(name in declared)) die(`unexpected input '${name}', valid inputs are ${Object.keys(declared).join(', ')}`);

  const runnerTemp = fs.mkdtempSync(path.join(os.tmpdir(), 'gha-runner-'));
  const workspace = process.cwd();
  // The machine's environment, less anything a previous step could have left.
  const base = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^(INPUT|STATE)_/.test(k)) base[k] = v;
  Object.assign(base, {
    GITHUB_ACTIONS: 'true', CI: 'true', RUNNER_OS: 'Linux', RUNNER_TEMP: runnerTemp,
    RUNNER_ARCH: process.arch === 'arm64' ? 'ARM64' : 'X64', GITHUB_WORKSPACE: workspace,
  });
  if (!base.RUNNER_TOOL_CACHE) base.RUNNER_TOOL_CACHE = path.join(runnerTemp, 'tool-cache');
  const inputsEnv = {};
  for (const [name, spec] of Object.entries(declared)) {
    const v = name in args.inputs ? args.inputs[name] : spec && spec.default !== undefined ? String(spec.default) : '';
    inputsEnv[`INPUT_${name.replace(/ /g, '_').toUpperCase()}`] = v;
  }
  const ctxEnv = { ...args.env }; // the env context: workflow env plus GITHUB_ENV exports
  const extraPath = [];
  let stepNo = 0;

  function runStep(label, argv, extraEnv) {
    stepNo++;
    const files = {};
    for (const n of ['GITHUB_OUTPUT', 'GITHUB_STATE', 'GITHUB_ENV', 'GITHUB_PATH', 'GITHUB_STEP_SUMMARY']) {
      files[n] = path.join(runnerTemp, `${stepNo}-${label}-${n.toLowerCase()}`);
      fs.writeFileSync(files[n], '');
    }
    const env = { ...base, ...ctxEnv, ...extraEnv, ...files };
    if (extraPath.length) env.PATH = [...extraPath, base.PATH].join(path.delimiter);
    const t0 = Date.now();
    const r = spawnSync(argv[0], argv.slice(1), { cwd: workspace, env, encoding: 'utf8', maxBuffer: 64 << 20 });
    const durationMs = Date.now() - t0;
    process.stderr.write(`---- ${label} (exit ${r.status})\n${r.stdout}${r.stderr}`);
    const step = {
      exit: r.error ? 127 : r.status === null ? 128 : r.status,
      durationMs,
      stdout: r.stdout || '',
      stderr: r.stderr || '',
      outputs: parseFileCommands(files.GITHUB_OUTPUT),
      state: parseFileCommands(files.GITHUB_STATE),
      env: parseFileCommands(files.GITHUB_ENV),
      summary: fs.readFileSync(files.GITHUB_STEP_SUMMARY, 'utf8'),
      annotations: parseCommands(r.stdout || ''),
      masks: parseMasks(r.stdout || ''),
    };
    Object.assign(ctxEnv, step.env);
    for (const p of fs.readFileSync(files.GITHUB_PATH, 'utf8').split('\n')) if (p) extraPath.unshift(p);
    return step;
  }

  const result = { postIf: runs['post-if'] || 'always()' };
  if (!runs.main) die('runs.main is missing');
  result.main = runStep('main', [process.execPath, path.resolve(actionDir, runs.main)], inputsEnv);
  let status = result.main.exit === 0 ? 'success' : 'failure';
  if (status === 'success' && args.build !== null) {
    result.build = runStep('build', ['bash', '-e', '-c', args.build], {});
    status = result.build.exit === 0 ? 'success' : 'failure';
  }
  if (args.cancel) status = 'cancelled';
  result.jobStatus = status;
  result.post = null;
  if (runs.post) {
    result.postRan = evaluate(result.postIf, { status, env: ctxEnv });
    if (result.postRan) {
      const stateEnv = {};
      for (const [k, v] of Object.entries(result.main.state)) stateEnv[`STATE_${k}`] = v;
      result.post = runStep('post', [process.execPath, path.resolve(actionDir, runs.post)], { ...inputsEnv, ...stateEnv });
    }
  }
  fs.writeFileSync(args.out, JSON.stringify(result, null, 2));
  fs.rmSync(runnerTemp, { recursive: true, force: true });
}

try {
  main();
} catch (e) {
  die(e.stack || e.message);
}
