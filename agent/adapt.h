/* Adaptive compression level, like `zstd --adapt`: the packer (layer.c) reports how long it
 * spent in the compressor and how long in the sink (the backend's put_write, which blocks
 * when the upload is slower than the compressor), and asks for a level each time zstd starts
 * a new job. When the sink is the bottleneck the compressor has time to spare: the level goes
 * up and fewer bytes go over the link. When the compressor is the bottleneck it goes down.
 *
 * Pure logic with no clock and no zstd: layer.c measures, this decides, so the rules are
 * unit-tested with synthetic timings (tests/agent/test_adapt.c).
 *
 * One controller lives for a whole save (save.c; layers are packed one after the other, so it
 * takes no lock), and it carries over what it learnt about the link: the level, and the rate
 * at which the sink took compressed bytes whenever the upload was the bottleneck. That rate
 * tells a compressor that is merely busy (its output still keeps the link fed: the upload
 * buffer is filling, as at the start of every layer) from one that starves the link; only the
 * second is a reason to lower the level. The first jobs of each layer (zstd's workers filling
 * up, nothing out yet) never lower it. */
#ifndef STOW_ADAPT_H
#define STOW_ADAPT_H

#include <stdint.h>

#define STOW_ADAPT_MIN_DEFAULT 1
#define STOW_ADAPT_MAX_DEFAULT 9

/* Shares of one window's wall time (reading files, tar, compressor, sink). The level rises
 * when the packer spent at least RAISE of it blocked in the sink (the upload is the
 * bottleneck: the compressor has time to spare), and falls when it spent at least LOWER_COMP
 * of it in the compressor (waiting for busy workers) and at most LOWER_SINK in the sink. In
 * between (or when reading the files is the bottleneck) it holds. Once the link's rate is
 * known, the level falls only while the compressor's output (smoothed over about TAU seconds)
 * stays under STARVE times that rate: above it the link is busy anyway. It also rises while
 * that output is at least 1 / (1 - RAISE) times the rate (what a sink share of RAISE means
 * once the buffers are full) before the sink's buffers fill (small layers never fill them),
 * judged on two windows at the same level (zstd's output lags its input by a job or two). */
#define STOW_ADAPT_RAISE 0.50
#define STOW_ADAPT_LOWER_COMP 0.30
#define STOW_ADAPT_LOWER_SINK 0.10
#define STOW_ADAPT_STARVE 0.90
#define STOW_ADAPT_TAU 0.5
/* A window shorter than this (seconds of wall time) decides nothing. */
#define STOW_ADAPT_MIN_WINDOW 0.005
/* A window that put less than this (compressed bytes) out does not measure the link. */
#define STOW_ADAPT_MIN_SAMPLE (256u * 1024u)
/* A layer's drain at put_commit measures the link only when it took this share of the time
 * the layer's bytes were going out (stow_adapt_end_frame). */
#define STOW_ADAPT_DRAIN_SHARE 0.25
/* More than any sink buffers ahead of the link (httpc's 4 MiB ring, socket buffers): when
 * this much more than the link's rate went out without the sink blocking, the rate was wrong
 * (a one-off stall on a fast store) and is forgotten. */
#define STOW_ADAPT_BUFFERED (16.0 * 1024 * 1024)

typedef struct stow_adapt {
    int min, max;          /* bounds, 1 <= min <= max <= 19 */
    int level;             /* the level in use */
    int pinned;            /* 1: compression_level = N, never changes */
    double comp_s;         /* this window: seconds inside the compressor */
    double sink_s;         /* this window: seconds inside the sink */
    double wall_s;         /* this window: seconds in all (comp_s and sink_s are part of it) */
    uint64_t out;          /* this window: compressed bytes handed to the sink */
    unsigned job;          /* zstd job id at the last decision */
    unsigned settle_until; /* no decision before this job id (jobs of the old level in flight) */
    int warm;              /* 1 from a new frame until its first jobs are through */
    /* Learnt over the whole save (bytes per second, 0 = not known yet). */
    double link_bps;   /* the sink's rate while it was the bottleneck */
    double out_bps;    /* the compressor's output rate, smoothed */
    double excess;     /* bytes out beyond link_bps since the sink last blocked */
    unsigned sink_run; /* consecutive windows the sink was the bottleneck */
    unsigned held;     /* windows judged since the last change */
    /* Statistics over the whole save. */
    int lo_used, hi_used;
    double level_bytes; /* sum of level x raw bytes compressed at that level */
    uint64_t bytes;     /* raw bytes accounted */
    unsigned changes;
} stow_adapt;

/* level > 0 pins it; level <= 0 is auto between min and max (clamped to 1..19, swapped if
 * reversed), starting at min. */
void stow_adapt_init(stow_adapt *a, int level, int min, int max);

/* Adds time spent in the compressor and in the sink, and the wall time since the last call
 * (which includes both, and the time spent reading and archiving the files). */
void stow_adapt_add_time(stow_adapt *a, double comp_s, double sink_s, double wall_s);

/* Accounts raw bytes compressed at the current level (for the mean level). */
void stow_adapt_add_bytes(stow_adapt *a, uint64_t raw);

/* Accounts compressed bytes handed to the sink (the rates above). */
void stow_adapt_add_out(stow_adapt *a, uint64_t stored);

/* Called with zstd's current job id (ZSTD_getFrameProgression) and its number of workers.
 * When a new job started since the last decision and the window is long enough, decides and
 * starts a new window. Returns the level to use from now on (the same one when unchanged). */
int stow_adapt_step(stow_adapt *a, unsigned job, int workers);

/* The end of a frame: put_commit waited drain_s seconds for the upload to drain, and the
 * layer's stored bytes went out over span_s seconds (its first byte out to the end of the
 * drain): stored / span_s is a lower bound of the link's rate (a layer smaller than the
 * sink's buffers only ever waits here). The wait itself is no reason to change the level:
 * at the end of a layer the compressor has nothing left to do, whatever the link. */
void stow_adapt_end_frame(stow_adapt *a, double drain_s, uint64_t stored, double span_s);

/* A new frame (a new layer): zstd job ids restart at 0. Keeps the level, the rates and the
 * window; its first jobs (until job `workers`) may raise the level but not lower it: the
 * workers are filling and the upload buffer is empty, whatever the link. */
void stow_adapt_new_frame(stow_adapt *a);

/* Mean level weighted by raw bytes (the current level when nothing was accounted). */
double stow_adapt_mean(const stow_adapt *a);

#endif
