/* Unit tests for agent/adapt.c: the adaptive level controller, fed synthetic timings (no
 * clock): a sink-bound upload climbs to the maximum, a compressor-bound one falls back to the
 * minimum, a balanced one holds; decisions wait for a new job and for the jobs of the old
 * level; a pinned level never moves; bounds are clamped; the mean is weighted by bytes. */
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
    /* a new frame (next layer) restarts the job ids and keeps the level and the window:
     * the previous layer's wait for its upload to drain counts in the first decision */
    stow_adapt_add_time(&a, 0.0, 0.05, 0.05); /* put_commit waited */
    stow_adapt_new_frame(&a);
    CHECK_INT(a.level, 4);
    stow_adapt_add_time(&a, 0.02, 0.0, 0.03); /* the new frame's first job alone: hold */
    CHECK_INT(stow_adapt_step(&a, 1, 2), 5);
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
    test_pinned();
    test_bounds();
    test_mean();
    TEST_DONE();
}
