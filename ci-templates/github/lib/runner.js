'use strict';
// The GitHub Actions runner's file and command protocol, spoken directly (no @actions/core):
//   inputs      INPUT_<NAME> environment variables (name upper-cased, spaces as '_')
//   outputs     NAME<<DELIM lines appended to the file named by GITHUB_OUTPUT
//   state       the same format in GITHUB_STATE; the post step gets it back as STATE_<name>
//   environment the same format in GITHUB_ENV; later steps (and post steps) get NAME
//   summary     Markdown appended to GITHUB_STEP_SUMMARY
//   annotations ::warning:: / ::error:: lines on stdout
const fs = require('fs');
const crypto = require('crypto');
const os = require('os');

function input(name) {
  const v = process.env[`INPUT_${name.replace(/ /g, '_').toUpperCase()}`];
  return v === undefined ? '' : v.trim();
}

// Non-empty trimmed lines of a multi-line input (like actions/cache's path and restore-keys).
function inputList(name) {
  return input(name)
    .split(/\r?\n/)
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

// YAML 1.2 core schema booleans, as @actions/core getBooleanInput accepts them.
function inputBool(name) {
  const v = input(name);
  if (['true', 'True', 'TRUE'].includes(v)) return true;
  if (['false', 'False', 'FALSE', ''].includes(v)) return false;
  throw new Error(`input ${name} must be true or false, not "${v}"`);
}

// Appends NAME<<DELIM\nvalue\nDELIM, which carries any value, to a runner file.
function appendFileCommand(envName, name, value) {
  const file = process.env[envName];
  if (!file) throw new Error(`${envName} is not set: not running under a GitHub Actions runner?`);
  const v = String(value);
  let delim;
  do {
    delim = `ghadelimiter_${crypto.randomUUID()}`;
  } while (v.includes(delim) || name.includes(delim));
  fs.appendFileSync(file, `${name}<<${delim}${os.EOL}${v}${os.EOL}${delim}${os.EOL}`);
}

const setOutput = (name, value) => appendFileCommand('GITHUB_OUTPUT', name, value);
const saveState = (name, value) => appendFileCommand('GITHUB_STATE', name, value);
const exportVariable = (name, value) => {
  appendFileCommand('GITHUB_ENV', name, value);
  process.env[name] = String(value);
};
const getState = (name) => process.env[`STATE_${name}`] || '';

function appendSummary(markdown) {
  const file = process.env.GITHUB_STEP_SUMMARY;
  if (file) fs.appendFileSync(file, markdown);
}

// Workflow command escaping, as in @actions/core.
const escapeData = (s) => String(s).replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
const escapeProperty = (s) => escapeData(s).replace(/:/g, '%3A').replace(/,/g, '%2C');

function command(name, props, message) {
  const p = Object.entries(props || {})
    .filter(([, v]) => v !== undefined && v !== '')
    .map(([k, v]) => `${k}=${escapeProperty(v)}`)
    .join(',');
  process.stdout.write(`::${name}${p ? ' ' + p : ''}::${escapeData(message)}${os.EOL}`);
}

const warning = (message, title) => command('warning', { title }, message);
const error = (message, title) => command('error', { title }, message);
const group = (title) => command('group', {}, title);
const endGroup = () => command('endgroup', {}, '');
// Masks a value in the rest of the log (::add-mask::), as core.setSecret does.
const setSecret = (value) => command('add-mask', {}, value);
const info = (message) => process.stdout.write(`${message}${os.EOL}`);

// Marks the step failed: an error annotation and exit status 1.
function setFailed(message) {
  error(message, 'stowage');
  process.exitCode = 1;
}

module.exports = {
  input,
  inputList,
  inputBool,
  setOutput,
  saveState,
  getState,
  exportVariable,
  appendSummary,
  warning,
  error,
  setSecret,
  group,
  endGroup,
  info,
  setFailed,
};
