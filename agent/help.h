/* The text of `stowage help` and the stowage(1) man page (`stowage help --man`), built from
 * one command list and the option table in config.c, so the two cannot disagree. */
#ifndef STOW_HELP_H
#define STOW_HELP_H

/* Writes the usage text (a FILE *). */
void stow_help_print(void *file);

/* Writes the manual page as roff for man(7) (a FILE *). */
void stow_help_print_man(void *file);

#endif
