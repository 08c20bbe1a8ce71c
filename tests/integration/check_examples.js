'use strict';
// Structural checks of examples/Dockerfile, examples/Dockerfile.wheels and
// examples/compose.yaml, on the parsed files (dockerfile-ast, js-yaml), for
// tests/integration/test_examples.sh. Prints "ok ..." / "FAIL ..." lines; exit 1 on a failure.
const fs = require('fs');
const path = require('path');

const src = process.env.STOW_TEST_SRC || path.join(__dirname, '..', '..');
const mods = path.join(src, 'tests', 'ci-tools', 'node_modules');
const { DockerfileParser } = require(path.join(mods, 'dockerfile-ast'));
const yaml = require(path.join(mods, 'js-yaml'));
const ex = path.join(src, 'examples');

let failures = 0;
const check = (cond, what) => {
  console.log(`${cond ? 'ok' : 'FAIL'} ${what}`);
  if (!cond) failures++;
};

function parse(name) {
  const d = DockerfileParser.parse(fs.readFileSync(path.join(ex, name), 'utf8'));
  const ins = d.getInstructions().map((i) => ({
    kw: i.getKeyword(),
    args: i.getArguments().map((a) => a.getValue()),
    mounts: (i.getFlags ? i.getFlags() : [])
      .filter((f) => f.getName() === 'mount')
      .map((f) => Object.fromEntries(f.getOptions().map((o) => [o.getName(), o.getValue()]))),
    text: i.getTextContent ? i.getTextContent() : '',
  }));
  const directives = Object.fromEntries(d.getDirectives().map((x) => [x.getName(), x.getValue()]));
  return { ins, directives };
}

function common(name) {
  const { ins, directives } = parse(name);
  // Dockerfile builds with the engine's built-in frontend (nothing pulled, so offline too:
  // test_examples_docker.sh builds it); Dockerfile.wheels needs named contexts (1.4+).
  if (name === 'Dockerfile') check(!directives.syntax, `${name}: no # syntax= line (built offline)`);
  else check(/^docker\/dockerfile:1/.test(directives.syntax || ''), `${name}: # syntax=docker/dockerfile:1`);
  const copyReq = ins.findIndex((i) => i.kw === 'COPY' && i.args[0] === 'requirements.txt');
  const copyAll = ins.findIndex((i) => i.kw === 'COPY' && i.args[0] === '.');
  const pip = ins.findIndex((i) => i.kw === 'RUN' && i.args.includes('pip') && i.args.includes('install'));
  check(copyReq >= 0 && pip > copyReq && copyAll > pip, `${name}: requirements copied, installed, then the code`);
  for (const target of ['/var/cache/apt', '/var/lib/apt']) {
    const apt = ins.find((i) => i.kw === 'RUN' && i.args.includes('apt-get'));
    const m = apt && apt.mounts.find((x) => x.type === 'cache' && x.target === target);
    check(m && m.sharing === 'locked', `${name}: apt cache mount ${target} with sharing=locked`);
  }
  check(
    ins.some((i) => i.kw === 'RUN' && i.args.includes('/etc/apt/apt.conf.d/docker-clean')),
    `${name}: docker-clean removed so apt keeps its downloads`,
  );
  check(!ins.some((i) => i.args.includes('--no-cache-dir')), `${name}: no --no-cache-dir`);
  return { ins, pip };
}

{
  const { ins, pip } = common('Dockerfile');
  const m = ins[pip].mounts.find((x) => x.type === 'cache' && x.target === '/root/.cache/pip');
  check(!!m, 'Dockerfile: pip install with --mount=type=cache,target=/root/.cache/pip');
}
{
  const { ins, pip } = common('Dockerfile.wheels');
  const m = ins[pip].mounts.find((x) => x.type === 'bind' && x.from === 'wheels');
  check(!!m, 'Dockerfile.wheels: the named context "wheels" is bind-mounted');
  const a = ins[pip].args;
  const fl = a.indexOf('--find-links');
  check(a.includes('--no-index') && fl >= 0 && m && a[fl + 1] === m.target, 'Dockerfile.wheels: pip --no-index --find-links <the mount>');
}

const reqs = fs.readFileSync(path.join(ex, 'requirements.txt'), 'utf8');
for (const p of ['torch', 'transformers', 'openvino'])
  check(new RegExp(`^${p}==`, 'm').test(reqs), `requirements.txt pins ${p}`);

const compose = yaml.load(fs.readFileSync(path.join(ex, 'compose.yaml'), 'utf8'));
for (const [name, svc] of Object.entries(compose.services || {})) {
  const b = svc.build || {};
  check(fs.existsSync(path.join(ex, b.context || '.', b.dockerfile || 'Dockerfile')), `compose ${name}: ${b.dockerfile} exists`);
  check((b.cache_from || []).some((c) => /^type=local,src=/.test(c)), `compose ${name}: cache_from type=local`);
  check((b.cache_to || []).some((c) => /^type=local,dest=.*mode=max/.test(c)), `compose ${name}: cache_to type=local mode=max`);
  if (b.dockerfile === 'Dockerfile.wheels')
    check(/\.docker-cache\/pip\/wheels$/.test((b.additional_contexts || {}).wheels || ''), `compose ${name}: wheels context`);
}
check(Object.keys(compose.services || {}).length === 2, 'compose: two services');

process.exit(failures ? 1 : 0);
