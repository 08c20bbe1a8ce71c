#include "progress.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define TTY_INTERVAL 0.2
#define LOG_INTERVAL 10.0

struct stow_progress {
    pthread_mutex_t lock;
    char what[32];
    uint64_t total, done;
    double start, last_print;
    int tty, drawn;
};

double stow_now(void) { return (double)stow_now_ms() / 1000.0; }

void stow_format_bytes(char *out, size_t outsz, uint64_t bytes)
{
    static const char *const units[] = {"B", "kB", "MB", "GB", "TB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1000.0 && u < 4) {
        v /= 1000.0;
        u++;
    }
    if (u == 0)
        snprintf(out, outsz, "%llu B", (unsigned long long)bytes);
    else
        snprintf(out, outsz, "%.1f %s", v, units[u]);
}

stow_progress *stow_progress_new(const char *what, uint64_t total_bytes)
{
    stow_progress *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    pthread_mutex_init(&p->lock, NULL);
    stow_strlcpy(p->what, what, sizeof(p->what));
    p->total = total_bytes;
    p->start = p->last_print = stow_now();
    p->tty = isatty(STDERR_FILENO);
    return p;
}

static void print_line(stow_progress *p, double now)
{
    char done[32], total[32], rate[32];
    double secs = now - p->start;
    double bps = secs > 0 ? (double)p->done / secs : 0;
    stow_format_bytes(done, sizeof(done), p->done);
    stow_format_bytes(total, sizeof(total), p->total);
    stow_format_bytes(rate, sizeof(rate), (uint64_t)bps);
    int pct = p->total ? (int)(100.0 * (double)p->done / (double)p->total) : 0;
    if (pct > 100)
        pct = 100;
    char eta[32] = "";
    if (bps > 0 && p->total > p->done)
        snprintf(eta, sizeof(eta), ", ETA %.0fs", (double)(p->total - p->done) / bps);
    if (p->tty) {
        fprintf(stderr, "\rstowage: %s %s / %s (%d%%), %s/s%s\033[K", p->what, done, total, pct,
                rate, eta);
        p->drawn = 1;
    } else {
        fprintf(stderr, "stowage: %s: %s of %s (%d%%), %s/s%s\n", p->what, done, total, pct, rate,
                eta);
    }
    fflush(stderr);
}

void stow_progress_add(stow_progress *p, uint64_t bytes)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    p->done += bytes;
    if (stow_log_get_level() >= STOW_LOG_INFO) {
        double now = stow_now();
        if (now - p->last_print >= (p->tty ? TTY_INTERVAL : LOG_INTERVAL)) {
            p->last_print = now;
            print_line(p, now);
        }
    }
    pthread_mutex_unlock(&p->lock);
}

uint64_t stow_progress_done(const stow_progress *p) { return p ? p->done : 0; }
double stow_progress_elapsed(const stow_progress *p) { return p ? stow_now() - p->start : 0; }

void stow_progress_finish(stow_progress *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    if (p->drawn) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
        p->drawn = 0;
    }
    pthread_mutex_unlock(&p->lock);
}

void stow_progress_free(stow_progress *p)
{
    if (p == NULL)
        return;
    stow_progress_finish(p);
    pthread_mutex_destroy(&p->lock);
    free(p);
}
