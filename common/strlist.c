/* A growable list of strings, split from comma- or newline-separated text. */
#include <stdlib.h>
#include <string.h>

#include "strlist.h"

int stow_strlist_add(stow_strlist *l, const char *s, stow_error *err)
{
    if (l->n >= 4096)
        return stow_error_set(err, STOW_EUSAGE, "too many list items");
    char **nv = realloc(l->v, (l->n + 1) * sizeof(*nv));
    if (nv == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    l->v = nv;
    if ((l->v[l->n] = strdup(s)) == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    l->n++;
    return STOW_OK;
}

int stow_strlist_split(stow_strlist *l, const char *s, stow_error *err)
{
    const char *p = s;
    while (*p) {
        size_t n = strcspn(p, ",\n");
        const char *b = p, *e = p + n;
        while (b < e && (*b == ' ' || *b == '\t' || *b == '\r'))
            b++;
        while (e > b && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
            e--;
        if (e > b) {
            char *item = strndup(b, (size_t)(e - b));
            if (item == NULL)
                return stow_error_set(err, STOW_ERR, "out of memory");
            int rc = stow_strlist_add(l, item, err);
            free(item);
            if (rc != STOW_OK)
                return rc;
        }
        p += n;
        if (*p)
            p++;
    }
    return STOW_OK;
}

void stow_strlist_free(stow_strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}
