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

int stow_adapt_step(stow_adapt *a, unsigned job, int workers)
{
    if (a->pinned || job <= a->job || job < a->settle_until)
        return a->level;
    if (a->wall_s < STOW_ADAPT_MIN_WINDOW)
        return a->level; /* too little to judge: keep accumulating */
    double sink = a->sink_s / a->wall_s, comp = a->comp_s / a->wall_s;
    int next = a->level;
    if (sink >= STOW_ADAPT_RAISE && a->level < a->max)
        next = a->level + 1;
    else if (comp >= STOW_ADAPT_LOWER_COMP && sink <= STOW_ADAPT_LOWER_SINK && a->level > a->min)
        next = a->level - 1;
    a->job = job;
    a->comp_s = a->sink_s = a->wall_s = 0;
    if (next != a->level) {
        a->level = next;
        a->changes++;
        note_level(a);
        /* The jobs already handed to the workers still run at the old level: judge the new
         * one only once they are through. */
        a->settle_until = job + (unsigned)(workers > 0 ? workers : 1);
    }
    return a->level;
}

void stow_adapt_new_frame(stow_adapt *a)
{
    a->job = 0;
    a->settle_until = 0;
}

double stow_adapt_mean(const stow_adapt *a)
{
    return a->bytes ? a->level_bytes / (double)a->bytes : (double)a->level;
}
