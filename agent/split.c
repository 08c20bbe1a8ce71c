/* Splitting a save's new files into layers of near-equal compressed work (DESIGN.md "Save"), so
 * that a cold restore extracts on every core. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache_int.h"
#include "manifest.h"

static int new_layer(stow_manifest *m, stow_error *err)
{
    stow_layer *l = stow_manifest_add_layer(m, err);
    if (l == NULL)
        return err->code;
    if (stow_random_hex(l->id, STOW_LAYER_ID_LEN / 2) != STOW_OK)
        return stow_error_set(err, STOW_ERR, "no randomness for layer ids");
    return STOW_OK;
}

/* ------------------------------------------------------------------------------------------
 * Splitting new files into layers of near-equal work (issue 16): restore extracts layers side
 * by side, so a cold save makes at least as many layers as the machine has cores.
 * ------------------------------------------------------------------------------------------ */

/* Bytes a file takes in a tar stream, roughly: data rounded to blocks plus pax headers. */
static uint64_t split_cost(const stow_file_entry *e)
{
    return ((e->size + 511) / 512) * 512 + 1024;
}

/* What a file costs a restore, in bytes of extraction: its tar bytes plus creating it (open,
 * write, close, rename, metadata: about as long as extracting 8 KiB). Balanced on this. */
#define SPLIT_FILE_WORK 8192
static uint64_t split_work(const stow_file_entry *e) { return split_cost(e) + SPLIT_FILE_WORK; }

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 1024 ? 1024 : (int)n;
}

void stow_save_split_defaults(stow_split_opts *o, uint64_t layer_size, int max_layers)
{
    int cpus = online_cpus();
    o->layer_size = layer_size;
    o->min_layers = (size_t)(cpus < 2 ? 2 : cpus);
    o->max_layers = max_layers > 0 ? (size_t)max_layers : 0;
    o->file_cap = STOW_SPLIT_FILE_CAP;
    o->min_layer_bytes = STOW_SPLIT_MIN_LAYER_BYTES;
}

/* A run: consecutive new files (index order) that go into one layer together. */
typedef struct {
    size_t first, last; /* indices into m->files, inclusive */
    size_t nfiles;
    uint64_t bytes, work; /* split_cost and split_work summed */
} split_run;

typedef struct {
    int32_t layer; /* index in m */
    size_t nfiles;
    uint64_t bytes, work;
} split_bin;

static int run_cmp(const void *a, const void *b)
{
    const split_run *x = a, *y = b;
    if (x->work != y->work)
        return x->work > y->work ? -1 : 1;
    return x->first < y->first ? -1 : x->first > y->first;
}

static int is_new(const stow_file_entry *e) { return e->type != STOW_FT_DIR && e->layer == -1; }

/* How many layers: enough for the cores, none under min_layer_bytes merely for that, room
 * left under max_layers for the next delta; the file cap unless max_layers forbids it; the
 * layer_size bound always. */
static size_t split_count(const stow_split_opts *o, size_t existing, size_t n, uint64_t bytes)
{
    size_t k = o->min_layers ? o->min_layers : 1;
    uint64_t by_bytes = o->min_layer_bytes ? bytes / o->min_layer_bytes : bytes;
    if (by_bytes < k)
        k = by_bytes < 1 ? 1 : (size_t)by_bytes;
    if (k > n)
        k = n;
    size_t room = SIZE_MAX;
    if (o->max_layers > 0)
        room = o->max_layers > existing + 1 ? o->max_layers - existing - 1 : 1;
    if (k > room)
        k = room;
    /* Runs carry up to an eighth of the cap: leave that much slack, or the last runs spill
     * into an extra small layer. */
    size_t by_files = o->file_cap ? (n / 7 * 8 + n % 7 * 8 / 7 + o->file_cap - 1) / o->file_cap : 1;
    if (by_files > room)
        by_files = room;
    if (by_files > k)
        k = by_files;
    uint64_t by_size = o->layer_size ? (bytes + o->layer_size - 1) / o->layer_size : 1;
    if (by_size > k)
        k = by_size > n ? n : (size_t)by_size;
    return k < 1 ? 1 : k;
}

/* See cache_int.h. Runs of consecutive small files (an eighth of a layer's share at most) keep
 * a directory's files together; runs go to the least loaded layer, largest first (LPT), so
 * every layer ends within a run of the mean unless one file alone is bigger. */
int stow_save_split_new_layers(stow_manifest *m, const stow_split_opts *o, stow_error *err)
{
    split_run *runs = NULL;
    split_bin *bins = NULL;
    size_t n = 0, nruns = 0, nbins = 0, existing = m->nlayers;
    uint64_t bytes = 0, work = 0;
    int rc = STOW_OK;

    for (size_t i = 0; i < m->nfiles; i++) {
        if (is_new(&m->files[i])) {
            n++;
            bytes += split_cost(&m->files[i]);
            work += split_work(&m->files[i]);
        }
    }
    if (n == 0)
        return STOW_OK;
    size_t k = split_count(o, existing, n, bytes);
    uint64_t target = (work + k - 1) / k;
    size_t fcap = o->file_cap ? o->file_cap : n;
    if (fcap < (n + k - 1) / k) {
        /* max_layers won over the file cap: the share of files plus the slack runs need, or
         * the last runs open a layer past max_layers. */
        fcap = (n + k - 1) / k;
        fcap += fcap / 7 + 1;
    }
    uint64_t run_max = target / 8 ? target / 8 : 1;
    size_t run_files = fcap / 8 ? fcap / 8 : 1;

    runs = malloc(n * sizeof(*runs));
    bins = malloc((n + k) * sizeof(*bins));
    if (runs == NULL || bins == NULL) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    split_run *cur = NULL;
    for (size_t i = 0; i < m->nfiles; i++) {
        const stow_file_entry *e = &m->files[i];
        if (!is_new(e))
            continue;
        uint64_t w = split_work(e);
        if (cur == NULL || cur->work + w > run_max || cur->nfiles >= run_files) {
            cur = &runs[nruns++];
            *cur = (split_run){.first = i, .last = i, .nfiles = 0, .bytes = 0, .work = 0};
        }
        cur->last = i;
        cur->nfiles++;
        cur->bytes += split_cost(e);
        cur->work += w;
    }
    qsort(runs, nruns, sizeof(*runs), run_cmp);
    if (k > nruns)
        k = nruns; /* a file bigger than the share: no empty layers beside it */

    for (size_t b = 0; b < k; b++) {
        if ((rc = new_layer(m, err)) != STOW_OK)
            goto done;
        bins[nbins++] =
            (split_bin){.layer = (int32_t)(m->nlayers - 1), .nfiles = 0, .bytes = 0, .work = 0};
    }
    for (size_t r = 0; r < nruns; r++) {
        const split_run *run = &runs[r];
        size_t best = nbins;
        for (size_t b = 0; b < nbins; b++) {
            const split_bin *x = &bins[b];
            int fits = x->nfiles == 0 ||
                       ((!o->layer_size || x->bytes + run->bytes <= o->layer_size) &&
                        x->nfiles + run->nfiles <= fcap);
            if (fits && (best == nbins || x->work < bins[best].work))
                best = b;
        }
        if (best == nbins) {
            if ((rc = new_layer(m, err)) != STOW_OK)
                goto done;
            bins[nbins++] =
                (split_bin){.layer = (int32_t)(m->nlayers - 1), .nfiles = 0, .bytes = 0, .work = 0};
        }
        split_bin *x = &bins[best];
        for (size_t i = run->first; i <= run->last; i++)
            if (is_new(&m->files[i]))
                m->files[i].layer = x->layer;
        x->nfiles += run->nfiles;
        x->bytes += run->bytes;
        x->work += run->work;
    }
done:
    free(runs);
    free(bins);
    return rc;
}

int stow_save_assign_new_layers(stow_manifest *m, uint64_t layer_size, stow_error *err)
{
    stow_split_opts o;
    stow_save_split_defaults(&o, layer_size, 0);
    return stow_save_split_new_layers(m, &o, err);
}
