#include "adapt.h"

#include <string.h>

static int clamp_level(int v) { return v < 1 ? 1 : v > 19 ? 19 : v; }

static void note_level(stow_adapt *a)
{
    if (a->level < a->lo_used)
        a->lo_used = a->level;
    if (a->level > a->hi_used)
        a->hi_used = a->level;
}

void stow_adapt_init(stow_adapt *a, int level, int min, int max)
{
    memset(a, 0, sizeof(*a));
    min = clamp_level(min);
    max = clamp_level(max);
    if (min > max) {
        int t = min;
        min = max;
        max = t;
    }
    if (level > 0) {
        a->pinned = 1;
        a->min = a->max = a->level = clamp_level(level);
    } else {
        a->min = min;
        a->max = max;
        a->level = min;
    }
    a->lo_used = a->hi_used = a->level;
}

void stow_adapt_add_time(stow_adapt *a, double comp_s, double sink_s, double wall_s)
{
    if (comp_s > 0)
        a->comp_s += comp_s;
    if (sink_s > 0)
        a->sink_s += sink_s;
    if (wall_s < comp_s + sink_s)
        wall_s = comp_s + sink_s; /* a caller's rounding, not time that went nowhere */
    if (wall_s > 0)
        a->wall_s += wall_s;
}

void stow_adapt_add_bytes(stow_adapt *a, uint64_t raw)
{
    a->level_bytes += (double)a->level * (double)raw;
    a->bytes += raw;
}

void stow_adapt_add_out(stow_adapt *a, uint64_t stored) { a->out += stored; }

/* Folds the window just judged into the rates learnt over the save. */
static void learn(stow_adapt *a, double sink)
{
    double rate = (double)a->out / a->wall_s;
    if (!a->warm) {
        /* An exponential average over about STOW_ADAPT_TAU seconds: one short window moves
         * it little. The warm-up is left out: nothing comes out while the workers fill. */
        double k = a->wall_s / STOW_ADAPT_TAU;
        a->out_bps = a->out_bps > 0 ? a->out_bps + (rate - a->out_bps) * (k < 1 ? k : 1) : rate;
    }
    if (sink >= STOW_ADAPT_RAISE) {
        /* The sink was the bottleneck, twice in a row (not one write that stalled): it took
         * bytes as fast as the link carries them. */
        if (a->out >= STOW_ADAPT_MIN_SAMPLE && a->sink_run++ > 0)
            a->link_bps = a->link_bps > 0 ? (a->link_bps + rate) / 2 : rate;
        a->excess = 0;
        return;
    }
    a->sink_run = 0;
    if (a->link_bps > 0 && sink <= STOW_ADAPT_LOWER_SINK) {
        a->excess += (double)a->out - a->link_bps * a->wall_s;
        if (a->excess < 0)
            a->excess = 0;
        if (a->excess > STOW_ADAPT_BUFFERED)
            a->link_bps = a->excess = 0;
    }
}

int stow_adapt_step(stow_adapt *a, unsigned job, int workers)
{
    if (a->pinned || job <= a->job || job < a->settle_until)
        return a->level;
    if (a->wall_s < STOW_ADAPT_MIN_WINDOW)
        return a->level; /* too little to judge: keep accumulating */
    unsigned nw = (unsigned)(workers > 0 ? workers : 1);
    if (a->warm && job > nw)
        a->warm = 0;
    double sink = a->sink_s / a->wall_s, comp = a->comp_s / a->wall_s;
    learn(a, sink);
    /* Without a known link rate (a fast store never blocks), the shares alone decide. */
    int starving = a->link_bps <= 0 || a->out_bps < STOW_ADAPT_STARVE * a->link_bps;
    /* The compressor's output is more than the link takes (twice: what a sink share of
     * RAISE means once the buffers are full), though the sink has not blocked yet: a layer
     * whose output fits in the sink's buffers, or the first jobs of each layer. */
    int spare = a->link_bps > 0 && a->held >= 2 &&
                a->out_bps >= a->link_bps / (1 - STOW_ADAPT_RAISE);
    int next = a->level;
    if ((sink >= STOW_ADAPT_RAISE || spare) && a->level < a->max)
        next = a->level + 1;
    else if (!a->warm && starving && comp >= STOW_ADAPT_LOWER_COMP &&
             sink <= STOW_ADAPT_LOWER_SINK && a->level > a->min)
        next = a->level - 1;
    a->job = job;
    a->comp_s = a->sink_s = a->wall_s = 0;
    a->out = 0;
    a->held++;
    if (next != a->level) {
        a->level = next;
        a->held = 0;
        a->changes++;
        note_level(a);
        /* The jobs already handed to the workers still run at the old level: judge the new
         * one only once they are through. */
        a->settle_until = job + nw;
    }
    return a->level;
}

void stow_adapt_end_frame(stow_adapt *a, double drain_s, uint64_t stored, double span_s)
{
    if (a->pinned)
        return;
    /* The link carried the whole layer between its first byte out and the end of the drain:
     * its rate is at least that. Small layers fit in the sink's buffers and never block it
     * before the end; this is how their link is known. Only when the drain took a good part
     * of the span: otherwise the span is mostly compressing or reading the files, and the
     * rate would be theirs. */
    if (drain_s >= STOW_ADAPT_MIN_WINDOW && drain_s >= STOW_ADAPT_DRAIN_SHARE * span_s &&
        stored >= STOW_ADAPT_MIN_SAMPLE && span_s > 0) {
        double floor = (double)stored / span_s;
        if (floor > a->link_bps)
            a->link_bps = floor;
    }
}

void stow_adapt_new_frame(stow_adapt *a)
{
    a->job = 0;
    a->settle_until = 0;
    a->warm = 1;
    a->excess = 0; /* put_commit drained the sink's buffers */
}

double stow_adapt_mean(const stow_adapt *a)
{
    return a->bytes ? a->level_bytes / (double)a->bytes : (double)a->level;
}
