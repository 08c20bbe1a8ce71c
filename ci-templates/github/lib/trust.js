'use strict';
// Trust decisions of the action (docs/TRUST.md), from the event the runner describes:
//  - read-only: untrusted triggers (pull_request_target, issue_comment, a pull request from a
//    fork, a workflow_run of a fork's pull request) restore but never save, unless the save input is 'true'; 'false' is always
//    read-only; 'auto' (default) decides by the event and says why in the log.
//  - scopes like actions/cache: a job writes only its own ref's scope (pull requests:
//    pr-<number>, so a fork's branch called main never writes main) and reads its own scope,
//    then the base branch, then the default branch. Branch names are escaped by stowage itself
//    ({ref:NAME}, one implementation for every template): feature/x and feature-x differ.
const fs = require('fs');

const UNTRUSTED_EVENTS = ['pull_request_target', 'issue_comment'];

function eventPayload() {
  const p = process.env.GITHUB_EVENT_PATH;
  if (!p) return {};
  try {
    return JSON.parse(fs.readFileSync(p, 'utf8')) || {};
  } catch {
    return {};
  }
}

// A pull request whose head lives in another repository. Not head.repo.fork alone: a pull
// request inside a repository that is itself a fork has fork = true on both sides.
function forkPullRequest(ev) {
  const pr = ev.pull_request;
  if (!pr || !pr.head || !pr.base) return '';
  const head = pr.head.repo;
  const base = pr.base.repo || {};
  if (!head) return 'a pull request from a deleted fork';
  if (head.full_name && base.full_name && head.full_name !== base.full_name) return `a pull request from the fork ${head.full_name}`;
  if (!head.full_name && head.fork) return 'a pull request from a fork';
  return '';
}

// workflow_run after a workflow of a fork's pull request: its artifacts and cache are the
// fork's, so it is as untrusted as the pull request itself.
function forkWorkflowRun(ev) {
  const head = ev.workflow_run && ev.workflow_run.head_repository;
  const repo = ev.repository || {};
  if (head && head.full_name && repo.full_name && head.full_name !== repo.full_name)
    return `a workflow_run of a pull request from the fork ${head.full_name}`;
  return '';
}

// { readOnly, reason } for the save input ('auto', 'true' or 'false').
function readOnly(saveInput, ev) {
  const want = (saveInput || 'auto').trim().toLowerCase();
  const name = process.env.GITHUB_EVENT_NAME || '';
  let untrusted = '';
  if (UNTRUSTED_EVENTS.includes(name)) untrusted = `${name} event`;
  else if (name.startsWith('pull_request')) untrusted = forkPullRequest(ev);
  else if (name === 'workflow_run') untrusted = forkWorkflowRun(ev);
  if (want === 'false') return { readOnly: true, reason: 'save: false' };
  if (want === 'true') return { readOnly: false, reason: untrusted ? `save: true given, saving despite the ${untrusted}` : '' };
  if (want !== 'auto') throw new Error(`save: expected auto, true or false, got "${saveInput}"`);
  return untrusted ? { readOnly: true, reason: `${untrusted}, untrusted (save: true overrides)` } : { readOnly: false, reason: '' };
}

// The pull request number: refs/pull/N/merge (or /head), else the event's.
function prNumber(ev) {
  const m = /^refs\/pull\/([0-9]+)\/(merge|head)$/.exec(process.env.GITHUB_REF || '');
  if (m) return m[1];
  if (ev.pull_request && Number.isInteger(ev.pull_request.number)) return String(ev.pull_request.number);
  if (ev.issue && ev.issue.pull_request && Number.isInteger(ev.issue.number)) return String(ev.issue.number);
  return '';
}

// Environment for stowage: STOWAGE_SCOPE / STOWAGE_FALLBACK_SCOPES (when the scope input is
// 'auto', the runner set GITHUB_REF, and the job did not set STOWAGE_SCOPE itself), and
// STOWAGE_READ_ONLY with its reason. log(...) is told what was decided.
function env(inputs, log) {
  const out = {};
  const ev = eventPayload();
  const ro = readOnly(inputs.save, ev);
  if (ro.readOnly) {
    out.STOWAGE_READ_ONLY = 'true';
    out.STOWAGE_READ_ONLY_REASON = ro.reason;
  }
  if (ro.reason) log(`stowage: ${ro.readOnly ? 'read-only: ' : ''}${ro.reason}`);
  const scopeInput = (inputs.scope || 'auto').trim();
  if (scopeInput !== 'auto') {
    out.STOWAGE_SCOPE = scopeInput;
    return out;
  }
  if (!process.env.GITHUB_REF || process.env.STOWAGE_SCOPE) return out;
  const pr = prNumber(ev);
  const base = process.env.GITHUB_BASE_REF || (ev.pull_request && ev.pull_request.base && ev.pull_request.base.ref) || '';
  const dflt = (ev.repository && ev.repository.default_branch) || '';
  if (pr) {
    out.STOWAGE_SCOPE = `pr-${pr}`;
  } else {
    // refs/heads/x -> x; a tag keeps its refs/tags/ prefix, so a tag never shares a branch's scope
    const ref = process.env.GITHUB_REF;
    out.STOWAGE_SCOPE_REF = ref.startsWith('refs/heads/') ? ref.slice(11) : ref;
    out.STOWAGE_SCOPE = '{ref:STOWAGE_SCOPE_REF}';
  }
  out.STOWAGE_BASE_REF = base;
  out.STOWAGE_DEFAULT_REF = dflt;
  if (!process.env.STOWAGE_FALLBACK_SCOPES) out.STOWAGE_FALLBACK_SCOPES = '{ref:STOWAGE_BASE_REF},{ref:STOWAGE_DEFAULT_REF}';
  log(`stowage: scope ${pr ? `pr-${pr}` : out.STOWAGE_SCOPE_REF} (escaped by stowage); reads fall back to ${[base, dflt].filter(Boolean).join(', then ') || 'nothing'}`);
  return out;
}

module.exports = { env, readOnly, forkPullRequest, forkWorkflowRun, prNumber };
