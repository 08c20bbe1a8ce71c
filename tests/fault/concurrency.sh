# shellcheck shell=bash
concurrency_cases(){ :; }
