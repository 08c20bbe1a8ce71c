# shellcheck shell=bash
enospc_cases(){ :; }
