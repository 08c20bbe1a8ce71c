/* Configuration: INI file (inih) < STOWAGE_* environment < command-line flags.
 * One table describes every option once: its section and name in the file, its environment
 * variable and its flag. Errors name the file and line, the variable, or the flag. */
#ifndef STOW_CONFIG_H
#define STOW_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "strlist.h"

#define STOW_CONFIG_MAX_BYTES (1u << 20) /* largest config file read */

typedef struct stow_config {
    /* [storage] */
    char *url;
    char *endpoint;
    char *region;
    int path_style; /* -1 auto */
    int verify_tls;
    char *ca_bundle;
    char *sts_endpoint;
    long connect_timeout_ms;
    long low_speed_timeout_s;
    long low_speed_limit; /* 0 = the backend's default */
    long deadline_s;      /* 0 = the backend's default */
    long retries;
    long parallel;
    char *token_env;
    stow_strlist headers;
    /* [cache] */
    char *key;
    stow_strlist restore_keys;
    stow_strlist paths;
    char *scope;
    stow_strlist fallback_scopes;
    long level;     /* 0 = auto */
    long level_min; /* auto bounds */
    long level_max;
    long threads;
    uint64_t layer_size;
    char *state_dir;
    int strict;
    int fail_on_miss;
    int lookup_only;
    int preserve_setid;
    int save_on_failure;
    int checksum;
    int update;
    int prune_buildx;
    long long max_age;
    uint64_t max_size;
    long long grace;
    int dry_run;
    int json;
    stow_strlist buildx_dirs;
    long max_layers;
    long
        trim_unused_after; /* trim.h: saves a file may go unread before it leaves the entry; 0 off */
    int trim;              /* --no-trim: skip trimming on this save */
    int trim_local;        /* trimmed files leave the runner's tree too */
    char *build_status;    /* save: how the build went (success, failed, ... or an exit code) */
    /* trust (docs/TRUST.md) */
    int read_only;              /* --read-only: no remote writes; save logs why and exits 0 */
    int save;                   /* save = false: the same as read_only = true */
    char *signing_key_file;     /* HMAC secret or Ed25519 private key (PEM): sign and verify */
    char *verify_key_file;      /* Ed25519 public key (PEM): verify only */
    const char *read_only_from; /* where read-only came from; NULL = off */
    /* [buildkit] */
    stow_strlist mounts;
    char *dockerfile;
    char *mounts_dir;
    char *helper_image;
    char *builder;
    char *docker;
    int extract_on_failure;
    /* command line only */
    char *config_file;
    int verbosity;        /* 0 normal, 1 -v, -1 -q */
    const char *url_from; /* where url came from: "file", "environment", "flag"; NULL = unset */
} stow_config;

/* Fills defaults, reads the config file (flag --config, else STOWAGE_CONFIG, else ./stowage.ini
 * when present; a regular file of at most STOW_CONFIG_MAX_BYTES), then the environment, then
 * argv[first..argc) flags. Positional arguments
 * (those not starting with '-', and everything after "--") are returned in *rest / *nrest
 * (pointers into argv). */
int stow_config_load(stow_config *cfg, int argc, char **argv, int first, char ***rest, int *nrest,
                     stow_error *err);
void stow_config_free(stow_config *cfg);

/* Writes the option reference (file key, variable, flag, meaning) for `stowage help`. */
void stow_config_print_help(void *file);

/* Writes the same reference as roff for the man page: one .SS per section, one .TP per option
 * (flag, alias, --no- form, variable, file key). */
void stow_config_print_man(void *file);

/* Writes text escaped for roff (for the man page's other sections). */
void stow_config_print_roff(void *file, const char *text);

#endif
