'use strict';
// GitHub OIDC for the role-to-assume input: the job's ID token, requested from the runner's
// token service (ACTIONS_ID_TOKEN_REQUEST_URL + &audience=, Authorization: bearer
// ACTIONS_ID_TOKEN_REQUEST_TOKEN; present only with `permissions: id-token: write`), masked in
// the log, written to a file readable only by the runner user in RUNNER_TEMP, and handed to
// stowage as a web identity (AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN, AWS_ROLE_SESSION_NAME),
// which it exchanges with STS AssumeRoleWithWebIdentity. Each step requests its own token:
// they expire (the post step's save may run an hour after the restore).
const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const https = require('https');
const os = require('os');
const path = require('path');
const gh = require('./runner');

const TOKEN_MAX = 64 * 1024; // an ID token is a few KB
const TIMEOUT_MS = 30000;

class OidcError extends Error {}

// RoleSessionName: 2..64 of [\w+=,.@-]; default stowage-<run id>-<attempt>.
function sessionName() {
  const given = gh.input('role-session-name');
  const raw = given || `stowage-${process.env.GITHUB_RUN_ID || 'local'}-${process.env.GITHUB_RUN_ATTEMPT || '1'}`;
  const name = raw.replace(/[^\w+=,.@-]/g, '-').slice(0, 64);
  if (name.length < 2) throw new OidcError(`role-session-name "${given}" is too short (2 to 64 characters)`);
  return name;
}

function get(url, headers) {
  return new Promise((resolve, reject) => {
    const mod = url.protocol === 'http:' ? http : https;
    const req = mod.get(url, { headers, timeout: TIMEOUT_MS }, (res) => {
      const chunks = [];
      let len = 0;
      res.on('data', (c) => {
        len += c.length;
        if (len > TOKEN_MAX) req.destroy(new Error(`answer longer than ${TOKEN_MAX} bytes`));
        else chunks.push(c);
      });
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer in ${TIMEOUT_MS / 1000} s`)));
    req.on('error', reject);
  });
}

// The job's ID token for audience.
async function requestIdToken(audience) {
  const base = process.env.ACTIONS_ID_TOKEN_REQUEST_URL;
  const bearer = process.env.ACTIONS_ID_TOKEN_REQUEST_TOKEN;
  if (!base || !bearer)
    throw new OidcError(
      'role-to-assume needs the job\'s OIDC token, and ACTIONS_ID_TOKEN_REQUEST_URL is not set: ' +
        'add "permissions: id-token: write" to the workflow or the job (see docs/CI.md)',
    );
  let url;
  try {
    url = new URL(base);
  } catch {
    throw new OidcError('ACTIONS_ID_TOKEN_REQUEST_URL is not a URL');
  }
  url.searchParams.set('audience', audience);
  let r;
  try {
    r = await get(url, { Authorization: `bearer ${bearer}`, Accept: 'application/json; api-version=2.0', 'User-Agent': 'stowage-action' });
  } catch (e) {
    throw new OidcError(`requesting the job's ID token from ${url.origin}: ${e.message}`);
  }
  if (r.status !== 200) throw new OidcError(`requesting the job's ID token from ${url.origin}: HTTP ${r.status}`);
  let value;
  try {
    value = JSON.parse(r.body).value;
  } catch {
    value = undefined;
  }
  if (typeof value !== 'string' || !/^[A-Za-z0-9._-]+$/.test(value))
    throw new OidcError(`the ID token service at ${url.origin} answered without a token`);
  return value;
}

// {} without role-to-assume; otherwise the web identity variables for stowage, with the token
// in a fresh 0600 file (call cleanup() once stowage is done).
async function webIdentityEnv() {
  const role = gh.input('role-to-assume');
  if (!role) return { env: {}, cleanup: () => {} };
  if (!/^arn:aws[a-z-]*:iam::\d{12}:role\/[\w+=,.@/-]+$/.test(role))
    throw new OidcError(`role-to-assume "${role}" is not an IAM role ARN (arn:aws:iam::123456789012:role/NAME)`);
  const audience = gh.input('audience') || 'sts.amazonaws.com';
  const session = sessionName();
  const token = await requestIdToken(audience);
  gh.setSecret(token); // before anything else can print it
  const dir = process.env.RUNNER_TEMP || os.tmpdir();
  const file = path.join(dir, `stowage-oidc-${crypto.randomUUID()}.jwt`);
  const fd = fs.openSync(file, 'wx', 0o600);
  try {
    fs.fchmodSync(fd, 0o600); // whatever the umask
    fs.writeSync(fd, token);
  } finally {
    fs.closeSync(fd);
  }
  gh.info(`stowage: web identity for ${role} (session ${session}, audience ${audience})`);
  // Keys in the environment come first in the credential chain: role-to-assume says to use the
  // role, so they are blanked for stowage (as configure-aws-credentials replaces them).
  const blanked = ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_SECURITY_TOKEN'].filter((n) => process.env[n]);
  if (blanked.length) gh.info(`stowage: role-to-assume is set: not passing ${blanked.join(', ')} to stowage`);
  return {
    env: {
      AWS_WEB_IDENTITY_TOKEN_FILE: file,
      AWS_ROLE_ARN: role,
      AWS_ROLE_SESSION_NAME: session,
      ...Object.fromEntries(blanked.map((n) => [n, ''])),
    },
    cleanup: () => fs.rmSync(file, { force: true }),
  };
}

module.exports = { OidcError, webIdentityEnv, requestIdToken };
