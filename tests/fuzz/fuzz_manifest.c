/* libFuzzer harness: the manifest reader (agent/manifest.h), which reads what the store hands
 * back: version 2 (JSON header + zstd front-coded index) or version 1 (JSON), told apart by the
 * first bytes. Anything it accepts must write back out (version 2) and read again to the same
 * bytes, and write as version 1 and read back to the same entries. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    stow_error err = {0};
    stow_manifest *m = NULL, *m2 = NULL, *m3 = NULL;
    char *j1 = NULL, *j2 = NULL, *js = NULL;
    size_t l1 = 0, l2 = 0, ls = 0;

    stow_log_set_level(STOW_LOG_ERROR);
    if (stow_manifest_decode(&m, (const char *)data, size, "fuzz", &err) != STOW_OK) {
        if (m != NULL || err.code == STOW_OK || err.msg[0] == '\0')
            abort(); /* a failure must leave no result and say why */
        return 0;
    }
    /* Lookups the restore path does on every entry must work on what was accepted. */
    for (size_t i = 0; i < m->nfiles; i++)
        if (stow_manifest_find(m, m->files[i].root, m->files[i].path) == NULL)
            abort();
    if (stow_manifest_encode(&j1, &l1, m, &err) != STOW_OK) {
        fprintf(stderr, "accepted manifest does not encode: %s\n", err.msg);
        abort();
    }
    if (stow_manifest_decode(&m2, j1, l1, "fuzz round trip", &err) != STOW_OK) {
        fprintf(stderr, "accepted manifest does not read back: %s\n", err.msg);
        abort();
    }
    if (stow_manifest_encode(&j2, &l2, m2, &err) != STOW_OK)
        abort();
    if (l1 != l2 || memcmp(j1, j2, l1) != 0 || m->nfiles != m2->nfiles ||
        m->nlayers != m2->nlayers || m->nroots != m2->nroots) {
        fprintf(stderr, "version 2 round trip differs\n");
        abort();
    }
    /* Version 1 of the same manifest reads back to the same version 2 bytes. */
    if (stow_manifest_to_json(&js, &ls, m2, &err) != STOW_OK ||
        stow_manifest_decode(&m3, js, ls, "fuzz v1", &err) != STOW_OK) {
        fprintf(stderr, "version 1 of an accepted manifest fails: %s\n", err.msg);
        abort();
    }
    free(j2);
    j2 = NULL;
    if (stow_manifest_encode(&j2, &l2, m3, &err) != STOW_OK || l1 != l2 || memcmp(j1, j2, l1) != 0)
        abort();
    free(js);
    free(j2);
    free(j1);
    stow_manifest_free(m3);
    stow_manifest_free(m2);
    stow_manifest_free(m);
    return 0;
}
