/* Caches that stay lean (issue 18): which restored files did the build read, and dropping
 * files that no build read for trim_unused_after saves from the next entry.
 *
 * Use tracking is by atime. After a restore every restored regular file gets a marker atime,
 * mtime - STOW_TRIM_MARK_OFFSET (same nanoseconds; the mtime is left alone), which is older
 * than the mtime, so `relatime` (and `strictatime`) moves it on the first read. A save sees a
 * file whose atime is still the marker as unread. Mounts where atime does not move (noatime,
 * some overlay setups) are found with a canary file that stowage writes, marks and reads in
 * every root; there the save says that trimming is unavailable and keeps every file.
 *
 * Each file of a manifest carries `unread`: the number of saves since a build last read or
 * wrote it. A save drops files with unread >= trim_unused_after from the new entry (and from
 * the runner's tree with trim_local), never a file read or written in this build, never a file
 * under a buildx cache, and nothing after a failed build. */
#ifndef STOW_TRIM_H
#define STOW_TRIM_H

#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

#include "cache.h"
#include "error.h"
#include "manifest.h"

/* 366 days and 7 seconds: no download or build spans that between creating and last writing a
 * file, so an atime this far below the mtime is stowage's marker and nothing else's. */
#define STOW_TRIM_MARK_OFFSET 31622407
/* stowage stats shows dead weight over this many saves when trim_unused_after is 0. */
#define STOW_TRIM_STATS_DEFAULT 3

/* The marker atime of a file whose mtime is mtime_sec.mtime_nsec. Extraction writes it
 * directly (agent/unpack.c), so that marking after a restore need not touch those files. */
static inline struct timespec stow_trim_marker_atime(int64_t mtime_sec, long mtime_nsec)
{
    struct timespec t;
    t.tv_sec = (time_t)(mtime_sec - STOW_TRIM_MARK_OFFSET);
    t.tv_nsec = mtime_nsec;
    return t;
}

/* A bitmap with one bit per index entry: files known to carry the marker already. */
static inline size_t stow_trim_known_bytes(size_t nfiles) { return nfiles / 8 + 1; }
static inline void stow_trim_known_set(unsigned char *known, size_t i)
{
    known[i / 8] |= (unsigned char)(1u << (i % 8));
}
static inline int stow_trim_known_has(const unsigned char *known, size_t i)
{
    return (known[i / 8] >> (i % 8)) & 1;
}

/* ---- restore side ---------------------------------------------------------------------- */

/* Marks every regular file of m that exists under roots (per manifest root, NULL = not
 * restored) as the index describes it, runs the canary in each root and records the result
 * (and m's key and scope) in the state directory for the next save. Never fails the caller:
 * problems are logged and leave tracking unavailable. File i is left alone when bit i of
 * known is set (known NULL: none is): the caller saw it on disk with its index mtime and the
 * marker atime (a warm restore's fstatat), or wrote it with the marker itself (extraction),
 * so a warm restore costs no syscall per file here and only files a build read since the
 * last marking are marked again. Restore calls it once the files are in place; save after a
 * commit, for the next save on the same runner. */
void stow_trim_mark_restored(const stow_manifest *m, char *const *roots, const stow_cache_params *p,
                             const unsigned char *known);

/* ---- save side --------------------------------------------------------------------------- */

/* What a build did with one file of the fresh scan. */
typedef enum {
    STOW_USE_NONE = 0, /* not tracked: not a regular file, or under a buildx cache */
    STOW_USE_READ,     /* read or written since the marks were set (or new to the entry) */
    STOW_USE_UNREAD,   /* unchanged since the parent and still carrying the marker atime */
    STOW_USE_UNKNOWN,  /* cannot tell (no marks for this parent, noatime, another device) */
    STOW_USE_LEFTOVER  /* not in the parent, marker atime: trimmed before and kept locally */
} stow_trim_use;

typedef struct stow_trim_policy {
    uint32_t after;   /* trim_unused_after; 0 = counts only */
    int enabled;      /* 0 for --no-trim */
    int build_failed; /* counts of unread files do not advance and nothing is trimmed */
} stow_trim_policy;

typedef struct stow_trim_stats {
    int tracked;        /* 1 when at least one root could tell read from unread files */
    int trimming;       /* 1 when the policy could drop files on this save */
    int counts_changed; /* some unread count differs from the parent's */
    uint64_t files_trimmed, bytes_trimmed;   /* left out of the entry */
    uint64_t files_unread, bytes_unread;     /* kept, but not read in this build */
    uint64_t files_kept_out, bytes_kept_out; /* leftovers of earlier trims not added again */
    char why[256];                           /* when tracked is 0 or trimming is 0: why */
} stow_trim_stats;

/* The files a save left out (for trim_local). */
typedef struct stow_trim_dropped stow_trim_dropped;
void stow_trim_dropped_free(stow_trim_dropped *d);

/* The policy, on a fresh scan m (sorted, layers -1) against parent, with use[i] for
 * m->files[i]: sets every file's unread count and removes the files to trim from m (and lists
 * them in *dropped when dropped is not NULL). */
int stow_trim_plan(stow_trim_stats *st, stow_trim_dropped **dropped, stow_manifest *m,
                   const stow_manifest *parent, const stow_trim_use *use,
                   const stow_trim_policy *pol, stow_error *err);

/* Observes the files of m on disk (before anything of the save reads them), then applies the
 * policy of p. Logs what it did, and why trimming is unavailable when it is. */
int stow_trim_apply(stow_trim_stats *st, stow_trim_dropped **dropped, stow_manifest *m,
                    const stow_manifest *parent, const stow_cache_params *p, stow_error *err);

/* With trim_local: deletes the dropped files below p->abs_paths (after the entry is saved). */
void stow_trim_remove_local(const stow_trim_dropped *d, const stow_cache_params *p);

/* ---- helpers ------------------------------------------------------------------------------- */

/* 1 when st carries the marker atime (the file was not read since it was marked). */
int stow_trim_is_marked(const struct stat *st);
/* Sets the marker atime on path (mtime untouched). */
int stow_trim_mark_path(const char *path, stow_error *err);
/* Writes, marks and reads a canary in dir: 1 when its atime moved, 0 when not (why says so),
 * -1 when the canary could not be made. */
int stow_trim_canary(const char *dir, char *why, size_t whysz);

/* "success", "passed", "0" -> 0; "failed", "failure", "canceled", "cancelled", a non-zero exit
 * code -> 1; NULL or "" -> 0 (not told); anything else -> -1. */
int stow_trim_parse_build_status(const char *s);

/* Regular files of m with unread >= after, and their bytes ("dead weight"). */
void stow_trim_dead_weight(uint64_t *files, uint64_t *bytes, const stow_manifest *m,
                           uint32_t after);

#endif
