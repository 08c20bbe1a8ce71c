/* A growable list of strings (at most 4096 items). */
#ifndef STOW_STRLIST_H
#define STOW_STRLIST_H

#include <stddef.h>

#include "error.h"

typedef struct stow_strlist {
    size_t n;
    char **v;
} stow_strlist;

/* Adds the comma- or newline-separated items of s, trimmed of blanks; empty items are skipped. */
int stow_strlist_split(stow_strlist *l, const char *s, stow_error *err);
int stow_strlist_add(stow_strlist *l, const char *s, stow_error *err);
void stow_strlist_free(stow_strlist *l);

#endif
