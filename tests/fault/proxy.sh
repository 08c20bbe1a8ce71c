# shellcheck shell=bash
proxy_cases(){ :; }
