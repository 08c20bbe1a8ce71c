'use strict';
// Save: the post step of the stowage action and the whole of stowage/save.
const fs = require('fs');
const gh = require('./lib/runner');
const oidc = require('./lib/oidc');
const st = require('./lib/stowage');

async function main() {
  const started = Date.now();
  const post = gh.getState('mode') === 'post' || gh.getState('bin') !== '';
  let key;
  let bin;
  if (post) {
    if (gh.getState('bootstrap') === 'failed') {
      gh.info('stowage: the restore step had no stowage binary; not saving');
      return;
    }
    // Save under the key computed before the build, like actions/cache.
    key = gh.getState('primary-key');
    if (!key) {
      gh.info('stowage: the restore step did not get as far as computing a key; not saving');
      return;
    }
    bin = gh.getState('bin');
  } else {
    key = gh.input('key');
  }
  if (!bin || !fs.existsSync(bin)) {
    try {
      ({ bin } = await st.findStowage());
    } catch (e) {
      if (!(e instanceof st.BootstrapError)) throw e;
      if (gh.inputBool('strict')) gh.setFailed(`no stowage binary: ${e.message}`);
      else gh.warning(`no stowage binary: ${e.message}; not saving (strict: true would fail the step)`, 'stowage');
      return;
    }
  }
  const args = ['save', ...st.commonArgs(key)];
  // The post step cannot see whether the job failed, and with save-on-failure it also runs after
  // a failed job: then it does not trim (a failed build never trims, docs/TRIM.md) unless the job
  // says how it went in STOWAGE_BUILD_STATUS (e.g. env: STOWAGE_BUILD_STATUS: ${{ job.status }}).
  if (post && process.env.STOWAGE_SAVE_ON_FAILURE === 'true' && !process.env.STOWAGE_BUILD_STATUS) {
    args.push('--no-trim');
  }
  // BuildKit cache mounts back into their host directories before the save, also after a
  // failed job (the downloads it made are the point); not after an inject that failed, when
  // the mounts may hold only part of what the host directories hold.
  let mounts = null;
  const exported = { true: 'injected', false: 'failed' }[process.env.STOWAGE_MOUNTS_INJECTED] || '';
  const injected = post ? gh.getState('mounts') : exported;
  if (injected === 'injected' && st.mountsWanted()) mounts = await st.mounts(bin, 'extract');
  else if (injected === 'failed') gh.info('stowage: BuildKit cache mounts not extracted: they were not injected');
  else if (!post && st.mountsWanted()) gh.warning('BuildKit cache mounts not extracted: no stowage restore injected them in this job', 'stowage');
  // a fresh ID token: the one the restore step used may have expired during the build
  let wi;
  try {
    wi = await oidc.webIdentityEnv();
  } catch (e) {
    if (!(e instanceof oidc.OidcError)) throw e;
    gh.setFailed(e.message);
    return;
  }
  let r;
  try {
    r = await st.run(bin, args, wi.env);
  } finally {
    wi.cleanup();
  }
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  const warned = r.log.some((l) => /^stowage: warning: /.test(l));
  const readOnly = r.log.find((l) => /^stowage: read-only: /.test(l));
  st.summary('stowage: cache save', [
    ['Result', r.code !== 0 ? `failed: ${st.exitMeaning(r.code)}` : readOnly ? st.html(readOnly.replace(/^stowage: /, '')) : warned ? 'not saved (warning, see the log)' : 'done'],
    ['Key', st.code(key)],
    ['Details', st.html(st.lastInfo(r.log)) || '—'],
    ...(mounts ? [['BuildKit mounts', mounts.done ? st.html(st.lastInfo(mounts.log)) || 'extracted' : 'not extracted (see the log)']] : []),
    ['Time', `${seconds} s`],
  ]);
  if (r.code !== 0) gh.setFailed(`stowage save: ${st.exitMeaning(r.code)}`);
  else if (mounts && mounts.code !== 0) gh.setFailed(`stowage mounts extract: ${st.exitMeaning(mounts.code)}`);
}

main().catch((e) => gh.setFailed(e.message));
