/*
 * images.c: images kept compact (graft.h, struct graft_images): the checks a reader
 * makes of a store, and a sample's pixels, viewed in place or decoded.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/format.h"

#define SIDE_MAX 32768

int graft_images_check(const struct graft_images *im, struct graft_err *err)
{
	int64_t channels = 0;

	if (im->store != GRAFT_STORE_UINT8 && im->store != GRAFT_STORE_ENCODED)
		return graft_err_set(err, GRAFT_EFORMAT, "images stored neither as uint8 pixels nor "
				     "encoded");
	if (im->n < 1)
		return graft_err_set(err, GRAFT_EFORMAT, "the dataset has no samples");
	for (int64_t i = 0; i < im->n; i++) {
		const int64_t *e = im->index + i * GRAFT_IMAGES_INDEX_COLS;
		int64_t off = e[0], size = e[1], h = e[2], w = e[3], c = e[4];
		if (off < 0 || size < 1 || (uint64_t)off > im->nbytes ||
		    (uint64_t)size > im->nbytes - (uint64_t)off)
			return graft_err_set(err, GRAFT_EFORMAT, "image %" PRId64 " lies outside "
					     "x.bytes (offset %" PRId64 ", size %" PRId64 " of %zu "
					     "bytes)", i, off, size, im->nbytes);
		if (h < 1 || w < 1 || h > SIDE_MAX || w > SIDE_MAX || (c != 1 && c != 3))
			return graft_err_set(err, GRAFT_EFORMAT, "image %" PRId64 " is %" PRId64 "x%"
					     PRId64 "x%" PRId64 ": sides of 1 to %d and 1 or 3 "
					     "channels", i, h, w, c, SIDE_MAX);
		if (channels && c != channels)
			return graft_err_set(err, GRAFT_EFORMAT, "image %" PRId64 " has %" PRId64
					     " channels, image 0 %" PRId64, i, c, channels);
		channels = c;
		if (im->store == GRAFT_STORE_UINT8 && size != h * w * c)
			return graft_err_set(err, GRAFT_EFORMAT, "image %" PRId64 " holds %" PRId64
					     " bytes; %" PRId64 "x%" PRId64 "x%" PRId64 " pixels "
					     "need %" PRId64, i, size, h, w, c, h * w * c);
	}
	return 0;
}

const uint8_t *graft_images_at(const struct graft_images *im, int64_t i)
{
	const uint8_t *base = im->parts ? im->parts[im->part[i]].bytes : im->bytes;

	return base + im->index[i * GRAFT_IMAGES_INDEX_COLS];
}

int images_pack(const struct graft_images *im, int64_t a, int64_t b,
		const unsigned char *dest, int which, struct graft_images *out, uint8_t **bytes,
		int64_t **index)
{
	size_t total = 0, at = 0;
	int64_t n = 0;

	for (int64_t i = a; i < b; i++)
		if (!dest || dest[i] == which) {
			total += (size_t)im->index[i * GRAFT_IMAGES_INDEX_COLS + 1];
			n++;
		}
	*bytes = malloc(total + 1);
	*index = malloc(sizeof(int64_t) * GRAFT_IMAGES_INDEX_COLS * (size_t)n + 1);
	if (!*bytes || !*index) {
		free(*bytes);
		free(*index);
		*bytes = NULL;
		*index = NULL;
		return GRAFT_ENOMEM;
	}
	n = 0;
	for (int64_t i = a; i < b; i++) {
		if (dest && dest[i] != which)
			continue;
		int64_t *e = *index + n++ * GRAFT_IMAGES_INDEX_COLS;
		memcpy(e, im->index + i * GRAFT_IMAGES_INDEX_COLS,
		       sizeof(int64_t) * GRAFT_IMAGES_INDEX_COLS);
		memcpy(*bytes + at, graft_images_at(im, i), (size_t)e[1]);
		e[0] = (int64_t)at;
		at += (size_t)e[1];
	}
	*out = (struct graft_images){.store = im->store, .n = n, .bytes = *bytes,
				     .nbytes = total, .index = *index};
	return 0;
}

void images_let_go(const struct graft_images *im, int64_t i, const void *p, size_t n)
{
	const struct graft_images *set = im->parts ? &im->parts[im->part[i]] : im;

	if (set->map)
		io_drop_pages(set->map, set->map_len, p, n);
}

int graft_images_pixels(const struct graft_images *im, int64_t i, struct graft_array *px,
			void **owned, struct graft_err *err)
{
	const int64_t *e = im->index + i * GRAFT_IMAGES_INDEX_COLS;
	int rc;

	*owned = NULL;
	memset(px, 0, sizeof(*px));
	if (im->store == GRAFT_STORE_UINT8) {
		px->dtype = GRAFT_UINT8;
		px->rank = 3;
		px->dims[0] = e[2];
		px->dims[1] = e[3];
		px->dims[2] = e[4];
		px->data = (void *)graft_images_at(im, i);
		px->nbytes = (size_t)e[1];
		return 0;
	}
	if ((rc = graft_image_decode(px, graft_images_at(im, i), (size_t)e[1], err))) {
		char what[40];
		snprintf(what, sizeof(what), "image %" PRId64, i);
		return graft_err_prefix(err, what);
	}
	if (px->dims[0] != e[2] || px->dims[1] != e[3]) {
		graft_array_release(px);
		return graft_err_set(err, GRAFT_EFORMAT, "image %" PRId64 " decodes to %" PRId64 "x%"
				     PRId64 "; x.index says %" PRId64 "x%" PRId64, i,
				     px->dims[0], px->dims[1], e[2], e[3]);
	}
	*owned = px->data;
	return 0;
}
