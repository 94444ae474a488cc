/*
 * error.c: the one error type every libgraft function fills.  A message is formatted
 * once, where the failure is understood, and carried up unchanged; callers only add
 * context in front (the file name) with graft_err_prefix.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/base.h"

int graft_err_set(struct graft_err *err, enum graft_status code, const char *fmt, ...)
{
	va_list ap;

	if (err) {
		err->code = code;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	return code;
}

int graft_err_prefix(struct graft_err *err, const char *prefix)
{
	char tmp[sizeof(err->msg)];
	size_t n;

	if (!err)
		return GRAFT_EINVAL;
	memcpy(tmp, err->msg, sizeof(tmp));
	n = strlen(prefix);
	if (n > sizeof(err->msg) - 3)
		n = sizeof(err->msg) - 3;
	memcpy(err->msg, prefix, n);
	memcpy(err->msg + n, ": ", 2);
	memcpy(err->msg + n + 2, tmp, sizeof(err->msg) - n - 3);
	err->msg[sizeof(err->msg) - 1] = 0;
	return err->code;
}
