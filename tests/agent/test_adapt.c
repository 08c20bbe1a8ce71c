/* Unit tests for agent/adapt.c: the adaptive level controller, fed synthetic timings (no
 * clock): a sink-bound upload climbs to the maximum, a compressor-bound one falls back to the
 * minimum, a balanced one holds; decisions wait for a new job and for the jobs of the old
 * level; a save of several layers over a simulated slow link keeps the level it found from
 * layer to layer, over a fast one stays at the minimum; a pinned level never moves; bounds
 * are clamped; the mean is weighted by bytes. */
#include "adapt.h"
#include "test.h"

/* One job's worth of feeds: comp and sink seconds, plus 0.01 s reading and archiving the
 * files, 4 MiB of input, then the step for job. */
static int run_job(stow_adapt *a, unsigned job, double comp, double sink)
{
    stow_adapt_add_bytes(a, 4u << 20);
    stow_adapt_add_time(a, comp, sink, comp + sink + 0.01);
    return stow_adapt_step(a, job, 2);
}

static void test_sink_bound_climbs(void)
{
    stow_adapt a;
    stow_adapt_init(&a, 0, 1, 9);
    CHECK_INT(a.level, 1);
    CHECK(!a.pinned);
    unsigned job = 1;
    /* Upload-bound: 90% of the time in the sink. One step per settled window. */
    for (int i = 0; i < 100; i++)
        run_job(&a, job++, 0.01, 0.09);
    CHECK_INT(a.level, 9); /* reaches the maximum and stays there */
    CHECK_INT(a.hi_used, 9);
    CHECK_INT(a.lo_used, 1);
    CHECK_INT(a.changes, 8);
    /* Now the compressor is the bottleneck: back down to the minimum. */
    for (int i = 0; i < 100; i++)
        run_job(&a, job++, 0.09, 0.001);
    CHECK_INT(a.level, 1);
    CHECK_INT(a.changes, 16);
}

static void test_compressor_bound_stays_low(void)
{
    stow_adapt a;
    stow_adapt_init(&a, 0, 1, 9);
    for (unsigned job = 1; job < 50; job++)
        CHECK_INT(run_job(&a, job, 0.05, 0.0001), 1);
    CHECK_INT(a.changes, 0);
    CHECK(stow_adapt_mean(&a) == 1.0);
}

static void test_balanced_holds(void)
{
    stow_adapt a;
    stow_adapt_init(&a, 0, 3, 9);
    CHECK_INT(a.level, 3);
    /* sink share 30%: between the thresholds, nothing changes */
    for (unsigned job = 1; job < 50; job++)
        CHECK_INT(run_job(&a, job, 0.07, 0.03), 3);
    CHECK_INT(a.changes, 0);
}

/* A fast store: compressor and sink both return quickly and the time goes to reading and
 * archiving the files. Equal, tiny compressor and sink times must not look like a slow link
 * (the first version compared the two with each other and climbed on a file store). */
static void test_fast_store_holds(void)
{
    stow_adapt a;
    stow_adapt_init(&a, 0, 1, 9);
    for (unsigned job = 1; job < 50; job++) {
        stow_adapt_add_time(&a, 0.002, 0.002, 0.02);
        CHECK_INT(stow_adapt_step(&a, job, 2), 1);
    }
    /* also from a level reached earlier: reading-bound holds it, it does not fall */
    stow_adapt_init(&a, 0, 1, 9);
    a.level = 5;
    for (unsigned job = 1; job < 50; job++) {
        stow_adapt_add_time(&a, 0.002, 0.002, 0.02);
        CHECK_INT(stow_adapt_step(&a, job, 2), 5);
    }
    /* the wall time never counts less than the parts it contains */
    stow_adapt_init(&a, 0, 1, 9);
    stow_adapt_add_time(&a, 0.0, 0.02, 0.0);
    CHECK_INT(stow_adapt_step(&a, 1, 2), 2);
}

static void test_decides_once_per_job_and_settles(void)
{
    stow_adapt a;
    stow_adapt_init(&a, 0, 1, 9);
    /* job 0 never decides (nothing started yet) */
    stow_adapt_add_time(&a, 0.01, 0.09, 0.1);
    CHECK_INT(stow_adapt_step(&a, 0, 2), 1);
    /* job 1: decides, raises to 2 */
    CHECK_INT(stow_adapt_step(&a, 1, 2), 2);
    /* still job 1: no second decision however long the sink waits */
    stow_adapt_add_time(&a, 0.01, 10, 10.01);
    CHECK_INT(stow_adapt_step(&a, 1, 2), 2);
    /* job 2: the two workers still run level-1 jobs (settle until 1 + 2) */
    CHECK_INT(stow_adapt_step(&a, 2, 2), 2);
    /* job 3: judged, on the window accumulated since the change */
    CHECK_INT(stow_adapt_step(&a, 3, 2), 3);
    /* a window too short to judge keeps accumulating */
    stow_adapt_add_time(&a, 0.0001, 0.0001, 0.001);
    CHECK_INT(stow_adapt_step(&a, 9, 2), 3);
    stow_adapt_add_time(&a, 0.0, 0.01, 0.01);
    CHECK_INT(stow_adapt_step(&a, 10, 2), 4);
    /* a new frame (next layer) restarts the job ids, keeps the level and the window; its
     * first jobs (up to one per worker) fill the workers and an empty upload buffer:
     * compressor-bound, but they do not lower the level */
    stow_adapt_new_frame(&a);
    CHECK_INT(a.level, 4);
    stow_adapt_add_time(&a, 0.02, 0.0, 0.03);
    CHECK_INT(stow_adapt_step(&a, 1, 2), 4);
    stow_adapt_add_time(&a, 0.02, 0.0, 0.03);
    CHECK_INT(stow_adapt_step(&a, 2, 2), 4);
    /* after them (no link rate known here) the shares decide again */
    stow_adapt_add_time(&a, 0.02, 0.0, 0.03);
    CHECK_INT(stow_adapt_step(&a, 3, 2), 3);
    /* the previous layer's wait for its upload to drain changes nothing (the first version
     * counted it as sink time and raised the level at each layer's first job) */
    stow_adapt_end_frame(&a, 0.05, 0, 0);
    stow_adapt_new_frame(&a);
    stow_adapt_add_time(&a, 0.02, 0.0, 0.03);
    CHECK_INT(stow_adapt_step(&a, 1, 2), 3);
    /* a sink that blocks in a layer's first jobs raises it */
    stow_adapt_add_time(&a, 0.0, 0.05, 0.05);
    CHECK_INT(stow_adapt_step(&a, 2, 2), 4);
    CHECK(a.link_bps == 0); /* nothing went out: no rate */
    /* a layer of 8 MB that went out over 4 s: the link carries at least 2 MB/s */
    stow_adapt_end_frame(&a, 1.0, 8000000, 4.0);
    CHECK(a.link_bps == 2e6);
    stow_adapt_end_frame(&a, 1.0, 4000000, 4.0); /* a lower bound never lowers it */
    CHECK(a.link_bps == 2e6);
    /* a drain that was a small part of the span (compressing or reading was slower) does
     * not measure the link */
    stow_adapt_end_frame(&a, 0.1, 80000000, 4.0);
    CHECK(a.link_bps == 2e6);
}

/* ------------------------------------------------------------------------------------------
 * A save of several layers against a simulated sink: a compressor whose speed and ratio fall
 * with the level, a sink that buffers `buffered` bytes ahead of a link of `link` bytes/s and
 * blocks put_write when that is full, drained empty by each layer's put_commit. Per job: the
 * compressor's time, then the sink's (blocked until the job's output fits), plus 2 ms reading
 * the files.
 * ------------------------------------------------------------------------------------------ */

typedef struct {
    double link, buffered;
    double backlog; /* bytes in the sink's buffers */
    double stall;   /* the next job's put_write also stalls this long (a descheduled write) */
    int lo, hi;     /* levels used in the current layer */
} sim;

#define SIM_JOB (4.0 * 1024 * 1024)

static void sim_job(sim *s, stow_adapt *a, unsigned job, double *span, double *stored)
{
    int level = a->level;
    double speed = 240e6 / level;                 /* raw bytes/s: 240 MB/s at 1, 40 MB/s at 6 */
    double out = SIM_JOB * (0.40 - 0.01 * level); /* 39% at 1, 31% at 9 */
    double comp = SIM_JOB / speed, sink = s->stall;
    s->stall = 0;
    s->backlog -= s->link * comp;
    if (s->backlog < 0)
        s->backlog = 0;
    if (s->backlog + out > s->buffered) {
        sink += (s->backlog + out - s->buffered) / s->link;
        s->backlog = s->buffered;
    } else {
        s->backlog += out;
    }
    stow_adapt_add_bytes(a, (uint64_t)SIM_JOB);
    stow_adapt_add_out(a, (uint64_t)out);
    stow_adapt_add_time(a, comp, sink, comp + sink + 0.002);
    stow_adapt_step(a, job, 2);
    *span += comp + sink + 0.002;
    *stored += out;
    if (a->level < s->lo)
        s->lo = a->level;
    if (a->level > s->hi)
        s->hi = a->level;
}

/* One layer of njobs; returns the level it ended at. */
static int sim_layer(sim *s, stow_adapt *a, unsigned njobs)
{
    stow_adapt_new_frame(a);
    s->backlog = 0; /* put_commit of the previous layer drained it */
    s->lo = s->hi = a->level;
    double span = 0, stored = 0;
    for (unsigned job = 1; job <= njobs; job++)
        sim_job(s, a, job, &span, &stored);
    double drain = s->backlog / s->link; /* put_commit */
    stow_adapt_end_frame(a, drain, (uint64_t)stored, span + drain);
    return a->level;
}

/* 20 MB/s behind a 4 MiB buffer: levels up to 4 keep the link busy (4: 21.6 MB/s out), 5 and
 * above starve it. Layer 1 climbs from the minimum; the later layers start where it settled
 * and never go below it: their first jobs find the buffer empty and the compressor busy,
 * which the first version took for a compressor-bound save and stepped down on every layer
 * (to 2 after settling at 3). */
static void test_layers_slow_link(void)
{
    stow_adapt a;
    sim s = {.link = 20e6, .buffered = 4.0 * 1024 * 1024};
    stow_adapt_init(&a, 0, 1, 9);
    int settled = sim_layer(&s, &a, 40);
    CHECK(settled >= 3 && settled <= 5);
    CHECK(a.link_bps > 18e6 && a.link_bps < 21e6); /* learnt while the sink blocked */
    for (int layer = 2; layer <= 4; layer++) {
        int end = sim_layer(&s, &a, 40);
        if (s.lo < settled || s.lo <= a.min)
            fprintf(stderr, "layer %d: levels %d..%d, layer 1 settled at %d\n", layer, s.lo, s.hi,
                    settled);
        CHECK(s.lo >= settled); /* never steps below where layer 1 settled */
        CHECK(s.lo > a.min);
        CHECK(end >= 3 && end <= 5);
    }
    CHECK(stow_adapt_mean(&a) > 2.7);
    CHECK_INT(a.hi_used <= 6, 1);
}

/* A fast store (2 GB/s, e.g. the file store on tmpfs): the compressor is always the bottleneck
 * and every layer stays at the minimum. One put_write that stalls (the writer descheduled)
 * raises the level for a moment and teaches a wrong link rate; the level is back at the
 * minimum within a few jobs, on that layer. */
static void test_layers_fast_sink(void)
{
    stow_adapt a;
    sim s = {.link = 2e9, .buffered = 4.0 * 1024 * 1024};
    stow_adapt_init(&a, 0, 1, 9);
    for (int layer = 1; layer <= 3; layer++) {
        CHECK_INT(sim_layer(&s, &a, 30), 1);
        CHECK_INT(s.hi, 1);
    }
    CHECK_INT(a.changes, 0);
    /* a stall of 100 ms at job 10 of layer 4 */
    stow_adapt_new_frame(&a);
    s.backlog = 0;
    unsigned job = 1;
    double span = 0, stored = 0;
    for (; job < 10; job++)
        sim_job(&s, &a, job, &span, &stored);
    s.stall = 0.1;
    sim_job(&s, &a, job++, &span, &stored);
    CHECK_INT(a.level, 2);
    while (job < 40 && a.level > 1)
        sim_job(&s, &a, job++, &span, &stored);
    CHECK_INT(a.level, 1);
    CHECK(job < 25);
    for (; job < 60; job++)
        sim_job(&s, &a, job, &span, &stored);
    CHECK_INT(a.level, 1);
    CHECK(stow_adapt_mean(&a) < 1.05);
}

static void test_pinned(void)
{
    stow_adapt a;
    stow_adapt_init(&a, 7, 1, 9);
    CHECK(a.pinned);
    for (unsigned job = 1; job < 20; job++)
        CHECK_INT(run_job(&a, job, 0.0, 1.0), 7);
    CHECK_INT(a.changes, 0);
    CHECK_INT(a.lo_used, 7);
    CHECK_INT(a.hi_used, 7);
    stow_adapt_init(&a, 25, 1, 9); /* clamped */
    CHECK_INT(a.level, 19);
}

static void test_bounds(void)
{
    stow_adapt a;
    stow_adapt_init(&a, 0, 12, 4); /* reversed: swapped */
    CHECK_INT(a.min, 4);
    CHECK_INT(a.max, 12);
    CHECK_INT(a.level, 4);
    stow_adapt_init(&a, 0, -3, 40);
    CHECK_INT(a.min, 1);
    CHECK_INT(a.max, 19);
    stow_adapt_init(&a, 0, 5, 5); /* min == max: never moves */
    for (unsigned job = 1; job < 20; job++)
        CHECK_INT(run_job(&a, job, 0.0, 1.0), 5);
    for (unsigned job = 20; job < 40; job++)
        CHECK_INT(run_job(&a, job, 1.0, 0.0), 5);
}

static void test_mean(void)
{
    stow_adapt a;
    stow_adapt_init(&a, 0, 1, 9);
    CHECK(stow_adapt_mean(&a) == 1.0);
    stow_adapt_add_bytes(&a, 100); /* 100 bytes at 1 */
    stow_adapt_add_time(&a, 0.0, 1.0, 1.0);
    CHECK_INT(stow_adapt_step(&a, 1, 1), 2);
    stow_adapt_add_bytes(&a, 300); /* 300 bytes at 2 */
    CHECK(stow_adapt_mean(&a) == 1.75);
}

int main(void)
{
    test_sink_bound_climbs();
    test_compressor_bound_stays_low();
    test_balanced_holds();
    test_fast_store_holds();
    test_decides_once_per_job_and_settles();
    test_layers_slow_link();
    test_layers_fast_sink();
    test_pinned();
    test_bounds();
    test_mean();
    TEST_DONE();
}
