#include "help.h"

#include <stdio.h>
#include <string.h>

#include "config.h"

/* The text of `stowage help` and of the man page (`stowage help --man`), kept in one place:
 * the commands and the paragraphs below, and the option table in config.c. */
static const struct {
    const char *synopsis;
    const char *help;
} commands[] = {
    {"restore [options]", "restore the newest matching entry into the paths"},
    {"save [options]", "save the paths under the key"},
    {"run [options] -- CMD [ARGS...]",
     "restore, run CMD, save (also when CMD fails unless --save-on-failure=false), exit with CMD's status"},
    {"mounts inject|extract [options]",
     "move BuildKit cache mounts ([buildkit] mounts, or --dockerfile FILE) from / to their host directories; "
     "prints mounts-result=done|failed on stdout; stowage run does restore, inject, CMD, extract, save"},
    {"setup [options]", "create the cache directories"},
    {"clean [options]", "empty the cache directories (local only)"},
    {"key [options]", "print the expanded key"},
    {"list [--json]",
     "entries in the store: scope, key, created, last used, size, stored size, layers"},
    {"stats [--json]", "local directory sizes and store totals"},
    {"prune [--max-age 7d] [--max-size 20G] [--grace 1h] [--dry-run]",
     "delete stale entries, then unreferenced layers and refs (--max-age 0d: every entry)"},
    {"doctor [options]",
     "print the resolved store, backend, S3 region, addressing, endpoint and credential source (never a "
     "secret), then PUT/GET/DELETE a probe object under the store prefix; exits 1 naming the failing step"},
    {"delete KEY [--scope SCOPE] [--dry-run]",
     "delete one entry and its refs; its layers go on the next prune once unreferenced"},
    {"help [--man] | --help", "this text (--man: the manual page, as roff)"},
    {"--version", "the version"},
};

static const char about[] =
    "CI cache persistence: restore cache directories before a build, save only what "
    "changed after it, on S3, plain HTTP or a local directory.";

static const char key_templates[] = "{hash:GLOB[,GLOB...]} {os} {arch} {env:NAME} {branch}";

static const char output_text[] =
    "restore prints cache-hit, cache-result (hit|partial|miss|error), cache-primary-key and cache-matched-key "
    "as name=value lines on stdout, and appends them to $GITHUB_OUTPUT when that is set. error: the entry was "
    "not restored (nothing replaced unless the log says otherwise), cache-hit=false. Logs and progress go "
    "to stderr.";

static const struct {
    const char *code;
    const char *meaning;
} exit_codes[] = {
    {"0", "success, a miss, or a storage/data problem reported as a warning (fail-open)"},
    {"1", "a storage or data problem with --strict"},
    {"2", "a usage or configuration error (always fatal)"},
    {"3", "restore found no entry and --fail-on-miss was given"},
};

static const char run_exit_text[] =
    "stowage run exits with the command's status (128+N when killed by signal N), "
    "or with one of the codes above when restore fails before the command runs.";

/* Writes text word-wrapped to width columns, every line indented by indent spaces except the
 * first when first_col says the cursor is already past the indent. */
static void wrap(FILE *f, const char *text, int indent, int first_col, int width)
{
    int col = first_col;
    const char *p = text;
    if (col < indent) {
        fprintf(f, "%*s", indent - col, "");
        col = indent;
    }
    int line_start = 1;
    while (*p != '\0') {
        size_t wl = strcspn(p, " ");
        if (!line_start && col + 1 + (int)wl > width) {
            fprintf(f, "\n%*s", indent, "");
            col = indent;
            line_start = 1;
        }
        if (!line_start) {
            fputc(' ', f);
            col++;
        }
        fwrite(p, 1, wl, f);
        col += (int)wl;
        line_start = 0;
        p += wl;
        while (*p == ' ')
            p++;
    }
    fputc('\n', f);
}

void stow_help_print(void *fp)
{
    FILE *f = fp;
    fprintf(f, "stowage %s - ", STOW_VERSION);
    wrap(f, about, 0, (int)strlen("stowage  - ") + (int)strlen(STOW_VERSION), 80);
    fprintf(f, "\nUsage:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        int n = fprintf(f, "  stowage %s", commands[i].synopsis);
        if (n > 29) {
            fputc('\n', f);
            n = 0;
        }
        wrap(f, commands[i].help, 30, n, 90);
    }
    fprintf(f, "\n"
               "Options (flags beat STOWAGE_* variables, which beat the config file):\n"
               "  --config FILE  (STOWAGE_CONFIG; default ./stowage.ini when present)\n"
               "  -v, --verbose  debug logging      -q, --quiet  warnings and errors only\n");
    stow_config_print_help(f);
    fprintf(f, "\nKey templates: %s\n\nOutput: ", key_templates);
    wrap(f, output_text, 0, 8, 90);
    fprintf(f, "\nExit status:\n");
    for (size_t i = 0; i < sizeof(exit_codes) / sizeof(exit_codes[0]); i++)
        fprintf(f, "  %s  %s\n", exit_codes[i].code, exit_codes[i].meaning);
    wrap(f, run_exit_text, 2, 0, 90);
}

#define ROFF(f, s) stow_config_print_roff((f), (s))

/* The manual page, roff for man(7), from the same tables as usage(). */
void stow_help_print_man(void *fp)
{
    FILE *f = fp;
    fprintf(f, ".TH STOWAGE 1 \"\" \"stowage %s\" \"User Commands\"\n.SH NAME\nstowage \\- ",
            STOW_VERSION);
    ROFF(f, "CI cache persistence on S3, plain HTTP or a local directory\n");
    fputs(".SH SYNOPSIS\n", f);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        fputs(".B stowage\n", f);
        ROFF(f, commands[i].synopsis);
        fputs("\n.br\n", f);
    }
    fputs(".SH DESCRIPTION\n", f);
    ROFF(f, about);
    fputs("\nFlags beat STOWAGE_* variables, which beat the config file.\n.SH COMMANDS\n", f);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        fputs(".TP\n.B stowage ", f);
        ROFF(f, commands[i].synopsis);
        fputs("\n", f);
        ROFF(f, commands[i].help);
        fputs("\n", f);
    }
    fputs(".SH OPTIONS\n.TP\n\\fB\\-\\-config\\fR \\fIFILE\\fR\n", f);
    ROFF(f,
         "the config file (INI); variable STOWAGE_CONFIG; default ./stowage.ini when present.\n");
    fputs(".TP\n\\fB\\-v\\fR, \\fB\\-\\-verbose\\fR\ndebug logging\n"
          ".TP\n\\fB\\-q\\fR, \\fB\\-\\-quiet\\fR\nwarnings and errors only\n",
          f);
    stow_config_print_man(f);
    fputs(".SH KEY TEMPLATES\n", f);
    ROFF(f, key_templates);
    fputs("\n.SH OUTPUT\n", f);
    ROFF(f, output_text);
    fputs("\n.SH EXIT STATUS\n", f);
    for (size_t i = 0; i < sizeof(exit_codes) / sizeof(exit_codes[0]); i++) {
        fprintf(f, ".TP\n.B %s\n", exit_codes[i].code);
        ROFF(f, exit_codes[i].meaning);
        fputs("\n", f);
    }
    fputs(".PP\n", f);
    ROFF(f, run_exit_text);
    fputs("\n.SH FILES\n.TP\n.I ./stowage.ini\nthe config file when no other is named\n"
          ".TP\n.I ~/.cache/stowage/state\nstate restore leaves for save (STOWAGE_STATE_DIR)\n"
          ".SH SECURITY\n",
          f);
    ROFF(f, "A password in --url is visible to other users in ps: pass the URL in STOWAGE_URL or "
            "put the credentials in .netrc. Credentials never belong in the config file.\n");
}
