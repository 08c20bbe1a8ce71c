/* A cache entry: the roots as configured, the layers, and an index of every file.
 *
 * The struct layout is public on purpose: the manifest is the record that scan, pack,
 * unpack and the cache logic all read and fill. Two serialisations: version 2 (written,
 * manifest_v2.c: a small JSON header and a zstd-compressed, front-coded binary file index)
 * and version 1 (all JSON, still read). Loading validates every field, because manifests come
 * from the store and the store is input. */
#ifndef STOW_MANIFEST_H
#define STOW_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "hash.h"

#define STOW_MANIFEST_VERSION 2              /* written by stow_manifest_encode */
#define STOW_MANIFEST_VERSION_JSON 1         /* all-JSON manifests: stow_manifest_to_json */
#define STOW_MANIFEST_MAX_BYTES (512u << 20) /* refuse larger manifests */
#define STOW_MAX_ROOTS 64
#define STOW_MAX_LAYERS 4096
#define STOW_MAX_FILES 10000000u
#define STOW_LAYER_ID_LEN 32     /* hex chars */
#define STOW_MAX_UNREAD 1000000u /* cap of stow_file_entry.unread */

typedef enum { STOW_FT_FILE = 'f', STOW_FT_DIR = 'd', STOW_FT_LINK = 'l' } stow_file_type;

typedef struct stow_file_entry {
    uint32_t root;    /* index into roots */
    char *path;       /* relative to the root, validated by stow_path_rel_ok; owned by the
                         manifest's string arena: never free() it */
    char type;        /* stow_file_type */
    uint32_t mode;    /* permission bits (07777) */
    uint64_t size;    /* regular files only */
    int64_t mtime;    /* seconds */
    int32_t mtime_ns; /* nanoseconds */
    int32_t layer;    /* index into layers; -1 for directories (they live in the index only) */
    char *target;     /* symlinks only; in the arena like path */
    char *sha256;     /* content hash (hex), only when saved with checksums; else NULL;
                         malloc'd (callers replace it) */
    uint32_t unread;  /* regular files: saves since a build last read or wrote it (trim.h);
                          "u" in JSON, absent = 0, so older manifests read as "all in use" */
} stow_file_entry;

typedef struct stow_layer {
    char id[STOW_LAYER_ID_LEN + 1];
    char sha256[STOW_SHA256_HEX_LEN + 1]; /* of the stored (compressed) object */
    uint64_t size;                        /* stored bytes */
    uint64_t raw_size;                    /* tar bytes */
    uint64_t files;                       /* entries in the archive */
} stow_layer;

typedef struct stow_manifest {
    char *key;
    char *scope;
    int64_t created; /* seconds since the epoch */
    size_t nroots;
    char **roots; /* as configured, e.g. "~/.docker-cache" */
    size_t nlayers;
    stow_layer *layers;
    size_t nfiles, capfiles;
    stow_file_entry *files;            /* sorted by (root, path) once stow_manifest_sort ran */
    struct stow_manifest_arena *arena; /* paths and link targets of files, freed together */
} stow_manifest;

stow_manifest *stow_manifest_new(void);
void stow_manifest_free(stow_manifest *m);

int stow_manifest_set_key(stow_manifest *m, const char *key, const char *scope, stow_error *err);
int stow_manifest_add_root(stow_manifest *m, const char *configured, stow_error *err);
stow_layer *stow_manifest_add_layer(stow_manifest *m, stow_error *err);
/* Appends a copy of e (path and target are copied into the arena, sha256 is strdup'd). */
int stow_manifest_add_file(stow_manifest *m, const stow_file_entry *e, stow_error *err);
void stow_manifest_sort(stow_manifest *m);
/* Binary search after sort; NULL when absent. */
stow_file_entry *stow_manifest_find(const stow_manifest *m, uint32_t root, const char *path);

/* proot[r] (m->nroots entries): the index of m's root r among other's roots by configured
 * spelling, -1 where other lacks it or other is NULL. */
void stow_manifest_map_roots(int32_t *proot, const stow_manifest *m, const stow_manifest *other);
/* The entry of other at e's root (mapped through proot) and path; NULL when there is none. */
const stow_file_entry *stow_manifest_find_mapped(const stow_manifest *other, const int32_t *proot,
                                                 const stow_file_entry *e);

/* Object name of a layer: "layers/<id>.tar.zst". */
int stow_manifest_layer_object(char *out, size_t outsz, const stow_layer *l);

/* The stored form: version 2 (manifest_v2.c). The index is written in (root, path) order
 * whether or not m is sorted. */
int stow_manifest_encode(char **out, size_t *outlen, const stow_manifest *m, stow_error *err);
/* Reads version 2 or version 1 (told apart by the first bytes), validates every field; the
 * result is sorted. what names the source in errors. */
int stow_manifest_decode(stow_manifest **out, const char *buf, size_t len, const char *what,
                         stow_error *err);

/* Version 1, all JSON (kept for reading old entries and for tests). */
int stow_manifest_to_json(char **out, size_t *outlen, const stow_manifest *m, stow_error *err);
/* Parses and validates version 1 only; the result is sorted. */
int stow_manifest_from_json(stow_manifest **out, const char *buf, size_t len, const char *what,
                            stow_error *err);

#endif
