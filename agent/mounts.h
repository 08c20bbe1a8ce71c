/* BuildKit cache mounts (RUN --mount=type=cache) moved between host directories and the
 * current builder, so that they survive ephemeral runners: the host directories are what
 * stowage restores and saves, the mounts are what the build sees.
 *
 * The transfer is a generated throwaway build on the same builder (the technique of
 * buildkit-cache-dance): inject runs a step that mounts each cache (same id, sharing and
 * uid/gid/mode as the Dockerfile declares, so BuildKit picks the same cache) and unpacks a tar
 * of the host directory into it; extract runs a step that packs each mount into a tar and
 * exports it with -o type=local. Tars, not plain copies, because BuildKit resets the owner of
 * build-context files to 0:0 and exports files as the client's user: the tar keeps the
 * numeric owners, which stowage records beside the files (.stowage-mount.json) since its own
 * store keeps modes but not owners. The only image used is the helper image (busybox by
 * default: it needs sh, tar with --numeric-owner, mkdir and echo). docker runs through
 * posix_spawn. */
#ifndef STOW_MOUNTS_H
#define STOW_MOUNTS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "error.h"

/* The file inside each host directory that keeps the owners of the mount's entries. */
#define STOW_MOUNTS_META ".stowage-mount.json"

typedef struct stow_mount {
    char *name;    /* as configured ("pip") or derived from the id */
    char *host;    /* absolute host directory */
    char *id;      /* BuildKit cache id; defaults to target as BuildKit does */
    char *target;  /* where the Dockerfile mounts it (informational) */
    char *sharing; /* shared, private, locked, or NULL (BuildKit's default: shared) */
    long uid, gid; /* -1 when not declared */
    long mode;     /* -1 when not declared */
} stow_mount;

typedef struct stow_mount_list {
    size_t n;
    stow_mount *v;
} stow_mount_list;

void stow_mount_list_free(stow_mount_list *l);

/* Parses one configured mount: "NAME:TARGET [id=ID] [sharing=S] [uid=N] [gid=N] [mode=0755]".
 * NAME is a directory under mounts_dir, or a path when it holds a '/' or starts with '~'.
 * host stays NULL until stow_mounts_resolve. */
int stow_mounts_parse_spec(stow_mount_list *l, const char *spec, stow_error *err);

/* Appends the cache mounts that RUN --mount=type=cache,... flags in a Dockerfile's text
 * declare (continuation lines joined, one entry per id). where names the file in messages. */
int stow_mounts_parse_dockerfile(stow_mount_list *l, const char *text, size_t len,
                                 const char *where, stow_error *err);

/* The list to transfer: the configured specs, then the Dockerfile's mounts (file may be NULL).
 * A Dockerfile mount with the id of a configured one fills in what the spec leaves unset
 * (sharing, uid, gid, mode); others get a host directory named after their id. Host
 * directories are expanded and must be distinct. */
int stow_mounts_resolve(stow_mount_list *out, const stow_strlist *specs, const char *dockerfile,
                        const char *mounts_dir, stow_error *err);

typedef struct stow_mounts_opts {
    const char *docker;       /* client binary, found on PATH; NULL = "docker" */
    const char *builder;      /* NULL: `docker build` (the default docker driver, BuildKit);
                                 else `docker buildx build --builder NAME` */
    const char *helper_image; /* NULL = "busybox" */
    const char *tmp_dir;      /* NULL = $TMPDIR or /tmp */
} stow_mounts_opts;

typedef struct stow_mounts_result {
    size_t mounts;  /* mounts transferred */
    uint64_t files; /* entries packed or unpacked on the host side */
    uint64_t bytes; /* tar bytes moved through the builder */
    double seconds; /* whole transfer, including the build */
    double build_seconds;
} stow_mounts_result;

/* STOW_OK when the client runs and the daemon answers; otherwise STOW_ERR with a message
 * that says which ("docker not found" / "daemon unreachable: ..."). With a builder, also
 * `docker buildx inspect NAME` (the buildx plugin and the builder must exist) and logs which
 * driver it has and what that means for the helper image. */
int stow_mounts_check_docker(const stow_mounts_opts *o, stow_error *err);

/* The value of the "Driver:" line of `docker buildx inspect` output (its first node's), into
 * out (capped at outsz); STOW_ENOTFOUND when there is none. */
int stow_mounts_buildx_driver(char *out, size_t outsz, const char *inspect_text);

/* Host directories -> cache mounts. Missing or empty host directories are skipped. */
int stow_mounts_inject(stow_mounts_result *res, const stow_mount_list *l, const stow_mounts_opts *o,
                       stow_error *err);

/* Cache mounts -> host directories (each replaced by the mount's contents, owners recorded
 * in STOW_MOUNTS_META). */
int stow_mounts_extract(stow_mounts_result *res, const stow_mount_list *l,
                        const stow_mounts_opts *o, stow_error *err);

/* 1 when [buildkit] mounts or dockerfile is set. */
int stow_mounts_configured(const stow_config *cfg);

/* What `stowage mounts inject|extract` and `stowage run` do: resolve the configured mounts,
 * check that docker answers, transfer, log a summary (and warn when a host directory is
 * outside [cache] paths, so save would not keep it). */
int stow_mounts_run(const stow_config *cfg, int extract, stow_error *err);

#endif
