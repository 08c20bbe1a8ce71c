/* The remote layout: the one place that knows how a store is organised (restic's
 * internal/backend/layout is the model). Everything else builds, parses and reads object
 * names through this module.
 *
 * Relative to the store URL:
 *   manifests/<scope>/<key>.json   one cache entry; written last, it is the commit point.
 *                                  The name stays ".json" for every manifest version (so
 *                                  listing, prune and old entries need one name): version 2
 *                                  is a JSON header and a binary index (manifest_v2.c),
 *                                  version 1 is all JSON; stow_manifest_decode reads both
 *   refs/<scope>/<restore-prefix>  {"key": newest key saved under that prefix, "created": t}
 *   layers/<id>.tar.zst            immutable zstd tarballs, shared by entries
 *   access/<scope>/<key>           {"time": last restore}, for prune
 *   leases/<id>.json               {"time", "scope", "key", "layers": [ids]}: a save in
 *                                  progress; prune never deletes a layer a live lease names
 *
 * A signed manifest object is the manifest's bytes followed by one trailer line (sign.h says
 * what is signed):
 *   "\n" "stowage-signature " <alg> " " <hex signature> "\n"
 * The signature covers exactly the bytes before that line, which are what restore parses; an
 * unsigned object has no trailer. Readers without a key strip the trailer unchecked.
 *
 * The file store writes an object under a temporary name first, "<dir>/.<base>.<16 hex>.tmp";
 * prune removes stale ones in layers/ and leases/ (a killed save leaves them behind).
 *
 * Every read of a manifest, ref, access marker or lease is capped at its limit while it
 * streams: a larger object is refused before more memory is allocated. */
#ifndef STOW_LAYOUT_H
#define STOW_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "error.h"
#include "manifest.h"
#include "sign.h"

/* The folders, for listing. */
#define STOW_LAYOUT_MANIFESTS "manifests/"
#define STOW_LAYOUT_REFS "refs/"
#define STOW_LAYOUT_LAYERS "layers/"
#define STOW_LAYOUT_ACCESS "access/"
#define STOW_LAYOUT_LEASES "leases/"
/* Listing prefixes that reach the file store's temporary objects in layers/ and leases/. */
#define STOW_LAYOUT_LAYER_TEMPS STOW_LAYOUT_LAYERS "."
#define STOW_LAYOUT_LEASE_TEMPS STOW_LAYOUT_LEASES "."

#define STOW_LAYOUT_NAME_MAX 1024
#define STOW_LAYOUT_PART_MAX 256 /* a scope, key or restore prefix, with its NUL */
#define STOW_REF_MAX_BYTES 65536
#define STOW_ACCESS_MAX_BYTES 4096
#define STOW_LEASE_MAX_BYTES (1u << 20)
/* A lease older than this belongs to a save that died: prune ignores and removes it. */
#define STOW_LEASE_MAX_AGE (6 * 3600)

/* Name builders. STOW_EUSAGE when the result is not a safe object name (a bad scope or key). */
int stow_layout_manifest_name(char *out, size_t outsz, const char *scope, const char *key);
int stow_layout_ref_name(char *out, size_t outsz, const char *scope, const char *prefix);
int stow_layout_access_name(char *out, size_t outsz, const char *scope, const char *key);
int stow_layout_layer_name(char *out, size_t outsz, const char *id);
int stow_layout_lease_name(char *out, size_t outsz, const char *id);

/* Name parsers: split a listed name back into its parts. 0, or -1 when name is not of that
 * kind (scope and the second part are STOW_LAYOUT_PART_MAX bytes, ids STOW_LAYER_ID_LEN + 1). */
int stow_layout_parse_manifest(char *scope, char *key, const char *name);
int stow_layout_parse_ref(char *scope, char *prefix, const char *name);
int stow_layout_parse_access(char *scope, char *key, const char *name);
int stow_layout_parse_layer(char *id, const char *name);
int stow_layout_parse_lease(char *id, const char *name);
/* A file-store temporary object "<dir>/.<base>.<16 hex>.tmp": 0 and the name it was going to
 * be committed as ("<dir>/<base>") in target, or -1. */
int stow_layout_parse_temp(char *target, size_t targetsz, const char *name);

/* Refs. decode checks that the key starts with prefix (when prefix is not NULL) and fits
 * STOW_LAYOUT_PART_MAX; what names the object in errors (STOW_ECORRUPT). */
int stow_layout_ref_encode(char **out, size_t *outlen, const char *key, int64_t created,
                           stow_error *err);
int stow_layout_ref_decode(char *key, size_t keysz, const char *buf, size_t len, const char *prefix,
                           const char *what, stow_error *err);

/* Access markers: the time as {"time": t}; decode gives 0 for anything unreadable. */
int stow_layout_access_encode(char *out, size_t outsz, int64_t t);
int64_t stow_layout_access_decode(const char *buf, size_t len);

/* Leases. */
typedef struct stow_lease {
    char id[STOW_LAYER_ID_LEN + 1];
    int64_t time; /* when the save wrote it (stow_layout_now) */
    char scope[STOW_LAYOUT_PART_MAX];
    char key[STOW_LAYOUT_PART_MAX];
    size_t nlayers;
    char (*layers)[STOW_LAYER_ID_LEN + 1];
} stow_lease;

int stow_lease_encode(char **out, size_t *outlen, const stow_lease *l, stow_error *err);
int stow_lease_decode(stow_lease *l, const char *buf, size_t len, const char *what,
                      stow_error *err);
void stow_lease_clear(stow_lease *l); /* frees layers; the struct may be reused */

/* Reads a whole object of at most max bytes into a malloc'd, NUL-terminated buffer,
 * refusing (STOW_ECORRUPT) as soon as the stream passes max. */
int stow_layout_fetch(char **out, size_t *outlen, stow_backend *b, const char *name, size_t max,
                      stow_error *err);
/* manifests/<scope>/<key>.json, parsed; STOW_ECORRUPT when it names another key. */
int stow_layout_fetch_manifest(stow_manifest **out, stow_backend *b, const char *scope,
                               const char *key, stow_error *err);
/* The same with signatures: with a signer, an entry without a valid signature is refused
 * (STOW_ECORRUPT, *refused = 1, the message names the object and the reason). */
int stow_layout_fetch_manifest_verified(stow_manifest **out, int *refused, stow_backend *b,
                                        const char *scope, const char *key,
                                        const stow_signer *signer, stow_error *err);
/* Manifest object bytes: body, plus the signature trailer when signer can sign. */
int stow_layout_manifest_seal(char **out, size_t *outlen, const char *name, const char *body,
                              size_t len, const stow_signer *signer, stow_error *err);
/* Splits an object into the manifest bytes (*bodylen) and its trailer: 1 with alg and sig
 * filled when there is one, 0 when there is none. */
int stow_layout_manifest_unseal(size_t *bodylen, char *alg, size_t algsz, char *sig, size_t sigsz,
                                const char *buf, size_t len);
/* refs/<scope>/<prefix>: the key it points at. */
int stow_layout_fetch_ref(char *key, size_t keysz, stow_backend *b, const char *scope,
                          const char *prefix, stow_error *err);
/* access/<scope>/<key>: the last restore, 0 when absent or unreadable. */
int64_t stow_layout_fetch_access(stow_backend *b, const char *scope, const char *key);
int stow_layout_fetch_lease(stow_lease *out, stow_backend *b, const char *name, stow_error *err);

/* Writers. */
int stow_layout_put_ref(stow_backend *b, const char *scope, const char *prefix, const char *key,
                        int64_t created, stow_error *err);
int stow_layout_put_access(stow_backend *b, const char *scope, const char *key, int64_t t,
                           stow_error *err);
int stow_layout_put_lease(stow_backend *b, const stow_lease *l, stow_error *err);

/* Seconds since the epoch, or STOWAGE_NOW when set (a test clock for lifecycle tests). */
int64_t stow_layout_now(void);

#endif
