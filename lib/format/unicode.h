/*
 * unicode.h: the Unicode properties BERT's basic tokenizer reads (wordpiece.c), from the
 * tables gen_unicode.py generates into unicode_data.c.  Internal to libgraft.
 */
#ifndef GRAFT_UNICODE_H
#define GRAFT_UNICODE_H

#include <stdint.h>

enum unicode_flag {
	UNICODE_CONTROL = 1,    /* Cc or Cf, but tab, newline and carriage return */
	UNICODE_SPACE = 2,      /* tab, newline, carriage return, space, Zs */
	UNICODE_PUNCT = 4,      /* P*, and every printable ASCII non-letter non-digit */
	UNICODE_MARK = 8,       /* Mn: a nonspacing mark (accents, once decomposed) */
	UNICODE_CASED = 16,     /* Lowercase, Uppercase or Lt */
	UNICODE_CASE_IGNORABLE = 32,
	/* (the last two for str.lower()'s capital sigma: final, U+03C2, after a cased
	 * letter and no cased one next, case-ignorable ones skipped on both sides) */
};

/* Code points from cp on, up to the next run's, have flags. */
struct unicode_run {
	uint32_t cp;
	uint8_t flags;
};
/* A code point and what it maps to: up to 4 code points, 0-terminated when fewer. */
struct unicode_map {
	uint32_t cp;
	uint32_t to[4];
};

extern const char unicode_version[];
extern const struct unicode_run unicode_runs[];
extern const unsigned unicode_n_runs;
extern const struct unicode_map unicode_lower[];      /* str.lower(), where it changes */
extern const unsigned unicode_n_lower;
extern const struct unicode_map unicode_strip[];      /* NFD without Mn, where it changes
						       * (Hangul syllables aside) */
extern const unsigned unicode_n_strip;

#endif
