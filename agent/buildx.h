/* Docker buildx local cache directories (--cache-to type=local): an OCI layout whose
 * blobs/ grow without bound (BuildKit issue #1896). stowage prunes them before a save:
 * blobs not reachable from index.json are deleted. */
#ifndef STOW_BUILDX_H
#define STOW_BUILDX_H

#include <stdint.h>

#include "error.h"

typedef struct stow_buildx_stats {
    uint64_t blobs_kept, blobs_deleted, bytes_deleted, missing;
} stow_buildx_stats;

/* 1 when dir holds an OCI layout (oci-layout and index.json files). */
int stow_buildx_detect(const char *dir);

/* Deletes every blob under dir/blobs/<alg>/ that index.json does not reach (OCI index ->
 * image manifests or indexes -> config and layers, both BuildKit cache manifest forms).
 * ingest/, index.json and oci-layout are kept. Referenced blobs that are missing are counted
 * and warned about. When anything cannot be parsed, nothing is deleted (STOW_ECORRUPT). */
int stow_buildx_prune(stow_buildx_stats *stats, const char *dir, stow_error *err);

#endif
