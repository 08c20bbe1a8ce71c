'use strict';
// Restore: the main step of the stowage action and the whole of stowage/restore.
const gh = require('./lib/runner');
const oidc = require('./lib/oidc');
const st = require('./lib/stowage');

// No binary: the job goes on without the cache (one warning, cache-result=error), or with
// strict the step fails. The post step then does not save.
function bootstrapFailed(message, started) {
  const strict = gh.inputBool('strict');
  gh.saveState('bootstrap', 'failed');
  gh.setOutput('cache-hit', 'false');
  gh.setOutput('cache-result', 'error');
  gh.setOutput('cache-primary-key', '');
  gh.setOutput('cache-matched-key', '');
  st.summary('stowage: cache restore', [
    ['Result', strict ? 'failed: no stowage binary' : 'error: no stowage binary, the job runs without the cache'],
    ['Details', st.html(message)],
    ['Time', `${((Date.now() - started) / 1000).toFixed(1)} s`],
  ]);
  if (strict) gh.setFailed(`no stowage binary: ${message}`);
  else gh.warning(`no stowage binary: ${message}; the job continues without the cache (strict: true would fail it)`, 'stowage');
}

async function main() {
  const started = Date.now();
  const lookupOnly = gh.inputBool('lookup-only');
  const failOnMiss = gh.inputBool('fail-on-cache-miss');
  // save-on-failure only means something for the combined action, whose post step runs when
  // post-if (success() || failure() && env.STOWAGE_SAVE_ON_FAILURE == 'true') holds. post-if
  // cannot read inputs, so the input travels as an environment variable for later steps.
  if (gh.inputBool('save-on-failure')) gh.exportVariable('STOWAGE_SAVE_ON_FAILURE', 'true');

  gh.saveState('mode', 'post'); // the post step of the combined action, not stowage/save
  let bin;
  try {
    ({ bin } = await st.findStowage());
  } catch (e) {
    if (!(e instanceof st.BootstrapError)) throw e;
    bootstrapFailed(e.message, started);
    return;
  }
  gh.saveState('bin', bin);
  const args = ['restore', ...st.commonArgs(gh.input('key'))];
  if (lookupOnly) args.push('--lookup-only');
  if (failOnMiss) args.push('--fail-on-miss');
  let wi;
  try {
    wi = await oidc.webIdentityEnv();
  } catch (e) {
    if (!(e instanceof oidc.OidcError)) throw e;
    gh.saveState('bootstrap', 'failed'); // nothing for the post step to save either
    gh.setOutput('cache-hit', 'false');
    gh.setOutput('cache-result', 'error');
    gh.setOutput('cache-primary-key', '');
    gh.setOutput('cache-matched-key', '');
    gh.setFailed(e.message);
    return;
  }
  let r;
  try {
    r = await st.run(bin, args, wi.env);
  } finally {
    wi.cleanup();
  }

  const o = r.outputs;
  // stowage reports cache-result=error (and cache-hit=false) for a restore that did not
  // restore the whole entry; a run that printed no outputs at all and failed is one too.
  const failedEarly = r.code !== 0 && r.code !== 3;
  const result = o['cache-result'] || (failedEarly ? 'error' : 'miss');
  const hit = o['cache-hit'] === 'true' && result === 'hit' ? 'true' : 'false';
  const primary = o['cache-primary-key'] || '';
  const matched = o['cache-matched-key'] || '';
  gh.setOutput('cache-hit', hit);
  gh.setOutput('cache-result', result);
  gh.setOutput('cache-primary-key', primary);
  gh.setOutput('cache-matched-key', matched);
  gh.saveState('primary-key', primary);
  gh.saveState('cache-hit', hit);
  gh.saveState('restore-exit', String(r.code));

  // BuildKit cache mounts: the restored host directories go into the builder's cache mounts
  // (fail-open like the restore: a failure is a warning unless strict). The post step (or
  // stowage/save) extracts them only after an inject that happened, as stowage run does.
  let mounts = null;
  if (r.code === 0 && !lookupOnly && st.mountsWanted()) {
    mounts = await st.mounts(bin, 'inject');
    gh.saveState('mounts', mounts.done ? 'injected' : 'failed');
    gh.exportVariable('STOWAGE_MOUNTS_INJECTED', mounts.done ? 'true' : 'false');
  }

  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  const label = {
    hit: 'hit (exact key)',
    partial: 'partial (restore-key prefix)',
    miss: 'miss',
    error: 'error: the entry was not restored (see Details)',
  }[result] || result;
  st.summary(lookupOnly ? 'stowage: cache lookup' : 'stowage: cache restore', [
    ['Result', r.code === 0 || r.code === 3 ? label : `failed: ${st.exitMeaning(r.code)}`],
    ['Primary key', st.code(primary)],
    ['Matched key', st.code(matched)],
    ['Paths', gh.inputList('path').map(st.code).join('<br>') || 'from the configuration'],
    ['Store', gh.input('url') ? st.code(st.redactUrl(gh.input('url'))) : 'from the configuration'],
    ['Details', st.html(st.lastInfo(r.log)) || '—'],
    ...(mounts ? [['BuildKit mounts', mounts.done ? st.html(st.lastInfo(mounts.log)) || 'injected' : 'not injected (see the log)']] : []),
    ['Time', `${seconds} s`],
  ]);
  if (r.code !== 0) gh.setFailed(`stowage restore: ${st.exitMeaning(r.code)}`);
  else if (mounts && mounts.code !== 0) gh.setFailed(`stowage mounts inject: ${st.exitMeaning(mounts.code)}`);
}

main().catch((e) => gh.setFailed(e.message));
