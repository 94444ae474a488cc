/*
 * test_datasrc.c: the raw dataset formats graft-data reads.  IDX files read the same
 * plain and gzip-compressed, and every way a header can lie is refused with a message
 * (wrong magic, type or rank, dims whose product overflows, data shorter or longer than
 * the dims, a damaged gzip trailer) without allocating what the header claims.  PNG
 * images decode to their bytes, resize as PyTorch's bilinear resize does, and images
 * whose header claims too many pixels are refused before decoding.  The mnist JSON
 * parser takes numbers in [0, 1] only.  WAV files: 16-bit PCM as its integers, 32-bit
 * float times 32768, WAVE_FORMAT_EXTENSIBLE, chunks of odd size skipped with their
 * padding; other encodings, channel counts, a missing chunk, a truncated or ragged data
 * chunk and non-finite samples refused, each saying what it found.
 */
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <cmocka.h>

#include <png.h>
#include <zlib.h>

#include "format/format.h"
#include "testmodel.h"

static char tmpdir[] = "/tmp/test_datasrc.XXXXXX";

static int setup(void **state)
{
	(void)state;
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[64];
	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	return system(cmd);
}

/* Writes len bytes to tmpdir/name, gzip-compressed when gz; returns the path (static). */
static const char *put(const char *name, const void *buf, size_t len, int gz)
{
	static char path[256];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	if (gz) {
		gzFile f = gzopen(path, "wb");
		assert_non_null(f);
		assert_int_equal(gzwrite(f, buf, (unsigned)len), (int)len);
		assert_int_equal(gzclose(f), Z_OK);
	} else {
		tm_put(path, buf, len);
	}
	return path;
}

/* An IDX header of unsigned bytes with the given dims, then data bytes 0, 1, 2... */
static size_t idx_bytes(unsigned char *b, int ndim, const uint32_t *dims, size_t data)
{
	size_t n = 4;
	b[0] = b[1] = 0;
	b[2] = 0x08;
	b[3] = (unsigned char)ndim;
	for (int i = 0; i < ndim; i++, n += 4) {
		b[n] = (unsigned char)(dims[i] >> 24);
		b[n + 1] = (unsigned char)(dims[i] >> 16);
		b[n + 2] = (unsigned char)(dims[i] >> 8);
		b[n + 3] = (unsigned char)dims[i];
	}
	for (size_t i = 0; i < data; i++)
		b[n + i] = (unsigned char)i;
	return n + data;
}

static void expect_idx_error(const char *path, int ndim, int code, const char *msg)
{
	struct graft_array a;
	struct graft_err err = {0};
	assert_int_equal(graft_idx_read(&a, path, ndim, &err), code);
	if (!strstr(err.msg, msg))
		fail_msg("message '%s' lacks '%s'", err.msg, msg);
	assert_non_null(strstr(err.msg, path));
	assert_null(a.data);
}

static void test_idx(void **state)
{
	unsigned char b[256];
	uint32_t dims[3] = {2, 3, 4};
	struct graft_array a;
	struct graft_err err = {0};
	size_t n = idx_bytes(b, 3, dims, 24);
	(void)state;

	for (int gz = 0; gz < 2; gz++) {
		const char *path = put(gz ? "images.gz" : "images", b, n, gz);
		assert_int_equal(graft_idx_read(&a, path, 3, &err), 0);
		assert_int_equal(a.dtype, GRAFT_UINT8);
		assert_int_equal(a.rank, 3);
		assert_int_equal(a.dims[0], 2);
		assert_int_equal(a.dims[1], 3);
		assert_int_equal(a.dims[2], 4);
		assert_int_equal(a.nbytes, 24);
		assert_memory_equal(a.data, b + 16, 24);
		graft_array_release(&a);
	}
	/* The labels' file read as images, and the other way round. */
	expect_idx_error(put("images", b, n, 0), 1, GRAFT_EFORMAT,
			 "IDX file has 3 dimensions, expected 1 (labels)");
	expect_idx_error(put("short", b, 3, 0), 3, GRAFT_EFORMAT, "truncated IDX file (no header)");
	expect_idx_error(put("short", b, 9, 0), 3, GRAFT_EFORMAT, "header cut short");
	expect_idx_error(put("short", b, n - 1, 1), 3, GRAFT_EFORMAT,
			 "truncated IDX file (23 bytes of data, the header says 24)");
	expect_idx_error(put("long", b, n + 1, 1), 3, GRAFT_EFORMAT, "bytes after the IDX data");
	b[2] = 0x0d;            /* float */
	expect_idx_error(put("float", b, n, 0), 3, GRAFT_EUNSUPPORTED,
			 "IDX element type 0x0d is not supported");
	b[2] = 0x07;
	expect_idx_error(put("magic", b, n, 0), 3, GRAFT_EFORMAT, "not an IDX file (bad magic)");
	assert_int_equal(graft_idx_read(&a, put("images", b, n, 0), 4, &err), GRAFT_EINVAL);
	expect_idx_error("/nonexistent/images", 3, GRAFT_EIO, "No such file");
}

/* Headers that claim more than the file holds cost nothing: dims whose product
 * overflows are refused, and a claim of 2^40 bytes over 10 bytes of data is refused
 * without allocating it (RLIMIT_AS holds this process to 8 GiB, where no sanitizer
 * reserves address space of its own). */
static void test_idx_lying_headers(void **state)
{
	unsigned char b[64];
	uint32_t huge[3] = {0xffffffffu, 0xffffffffu, 0xffffffffu};
	uint32_t big[3] = {1u << 20, 1u << 10, 1u << 10};
	size_t n;
	struct rlimit old;
	(void)state;

	n = idx_bytes(b, 3, huge, 10);
	expect_idx_error(put("huge", b, n, 0), 3, GRAFT_EFORMAT,
			 "IDX dimensions [4294967295,4294967295,4294967295] are too large");
	n = idx_bytes(b, 3, big, 10);
	assert_int_equal(getrlimit(RLIMIT_AS, &old), 0);
#if !defined(__SANITIZE_ADDRESS__) && !defined(__clang__)
	struct rlimit lim = old;
	lim.rlim_cur = (rlim_t)8 << 30;
	if (old.rlim_cur == RLIM_INFINITY || old.rlim_cur > lim.rlim_cur)
		assert_int_equal(setrlimit(RLIMIT_AS, &lim), 0);
#endif
	expect_idx_error(put("big", b, n, 1), 3, GRAFT_EFORMAT,
			 "truncated IDX file (10 bytes of data, the header says 1099511627776)");
	setrlimit(RLIMIT_AS, &old);
}

/* A damaged gzip trailer (its CRC) is an error, not data. */
static void test_idx_damaged_gzip(void **state)
{
	unsigned char b[64], gz[256];
	uint32_t dims[1] = {5};
	size_t n = idx_bytes(b, 1, dims, 5);
	FILE *f;
	size_t len;
	const char *path;
	(void)state;

	path = put("labels.gz", b, n, 1);
	f = fopen(path, "rb");
	len = fread(gz, 1, sizeof(gz), f);
	fclose(f);
	gz[len - 8] ^= 0xff;    /* the CRC32 */
	expect_idx_error(put("labels.gz", gz, len, 0), 1, GRAFT_EFORMAT, "");
	/* Cut inside the deflate stream. */
	expect_idx_error(put("labels.gz", gz, len - 12, 0), 1, GRAFT_EFORMAT, "");
}

static void test_png_decode_and_resize(void **state)
{
	size_t len;
	void *png = tm_png(5, 3, 0, &len);
	struct graft_array rgb;
	struct graft_err err = {0};
	float out[3 * 3 * 5], half[3 * 2 * 3], grey[3 * 5];
	(void)state;

	assert_int_equal(graft_image_decode(&rgb, png, len, &err), 0);
	assert_int_equal(rgb.rank, 3);
	assert_int_equal(rgb.dims[0], 3);
	assert_int_equal(rgb.dims[1], 5);
	assert_int_equal(rgb.dims[2], 3);
	const unsigned char *p = rgb.data;
	for (int y = 0; y < 3; y++)
		for (int x = 0; x < 5; x++)
			for (int c = 0; c < 3; c++)
				assert_int_equal(p[(y * 5 + x) * 3 + c], (x * 40 + y * 7 + c * 90) & 0xff);
	/* Same size: exactly the bytes / 255, channels first. */
	assert_int_equal(graft_image_resize(&rgb, 3, 5, 0, out, &err), 0);
	for (int c = 0; c < 3; c++)
		for (int i = 0; i < 15; i++)
			assert_true(out[c * 15 + i] == (float)p[i * 3 + c] / 255.0f);
	/* To 2x3: output (0, 1) reads the input at y = 0.25, x = 1.1667 (align_corners
	 * false), the bilinear mix of pixels (0,1), (0,2), (1,1), (1,2). */
	assert_int_equal(graft_image_resize(&rgb, 2, 3, 0, half, &err), 0);
	{
		double sy = 0.25, sx = 1.5 * 5 / 3 - 0.5 - 1;
		double v = (1 - sy) * ((1 - sx) * p[1 * 3] + sx * p[2 * 3]) +
			   sy * ((1 - sx) * p[(5 + 1) * 3] + sx * p[(5 + 2) * 3]);
		assert_true(fabs(half[1] - v / 255) < 1e-6);
	}
	/* Grey: BT.601 luminance of the channels. */
	assert_int_equal(graft_image_resize(&rgb, 3, 5, 1, grey, &err), 0);
	for (int i = 0; i < 15; i++)
		assert_true(fabsf(grey[i] - (0.299f * out[i] + 0.587f * out[15 + i] +
					     0.114f * out[30 + i])) < 1e-6f);
	/* Refused: sizes out of range, an array that is not RGB bytes. */
	assert_int_equal(graft_image_resize(&rgb, 0, 5, 0, out, &err), GRAFT_EINVAL);
	rgb.dims[2] = 4;
	assert_int_equal(graft_image_resize(&rgb, 3, 5, 0, out, &err), GRAFT_EINVAL);
	graft_array_release(&rgb);
	/* A grey PNG comes out with the grey replicated. */
	free(png);
	png = tm_png(4, 2, 1, &len);
	assert_int_equal(graft_image_decode(&rgb, png, len, &err), 0);
	p = rgb.data;
	for (int i = 0; i < 8; i++)
		assert_true(p[3 * i] == p[3 * i + 1] && p[3 * i] == p[3 * i + 2]);
	graft_array_release(&rgb);
	free(png);
}

/* Sets a PNG's IHDR width and height and mends its CRC, as a hostile file would. */
static void png_set_size(unsigned char *png, uint32_t w, uint32_t h)
{
	unsigned char *ihdr = png + 8 + 4;       /* after the signature and the length */
	for (int i = 0; i < 4; i++) {
		ihdr[4 + i] = (unsigned char)(w >> (24 - 8 * i));
		ihdr[8 + i] = (unsigned char)(h >> (24 - 8 * i));
	}
	uint32_t crc = (uint32_t)crc32(0, ihdr, 4 + 13);
	for (int i = 0; i < 4; i++)
		ihdr[17 + i] = (unsigned char)(crc >> (24 - 8 * i));
}

static void test_image_refusals(void **state)
{
	size_t len;
	unsigned char *png = tm_png(4, 4, 0, &len);
	struct graft_array rgb;
	struct graft_err err = {0};
	(void)state;

	/* 20000 x 20000 is under the side limit but 400 Mpixel: refused from its header. */
	png_set_size(png, 20000, 20000);
	assert_int_equal(graft_image_decode(&rgb, png, len, &err), GRAFT_EUNSUPPORTED);
	assert_non_null(strstr(err.msg, "PNG of 20000x20000 is too large"));
	assert_null(rgb.data);
	/* The same size, its data cut: corrupt, not a grey image. */
	png_set_size(png, 4, 4);
	assert_int_equal(graft_image_decode(&rgb, png, len - 20, &err), GRAFT_EFORMAT);
	assert_non_null(strstr(err.msg, "corrupt or unsupported PNG"));
	free(png);
	static const unsigned char jpeg_start[] = {0xff, 0xd8, 0xff, 0xe0, 0, 16, 'J', 'F'};
	assert_int_equal(graft_image_decode(&rgb, jpeg_start, sizeof(jpeg_start), &err),
			 GRAFT_EFORMAT);
	assert_non_null(strstr(err.msg, "corrupt or unsupported JPEG"));
	assert_int_equal(graft_image_decode(&rgb, "GIF89a", 6, &err), GRAFT_EFORMAT);
	assert_string_equal(err.msg, "not a PNG or JPEG image");
	assert_int_equal(graft_image_decode(&rgb, "", 0, &err), GRAFT_EFORMAT);
}

static void test_mnist_json(void **state)
{
	float *v;
	size_t n;
	struct graft_err err = {0};
	(void)state;

	assert_int_equal(graft_mnist_json_parse("[{\"data\": [0, 0.5,1 ,\n0.25]}]", &v, &n, &err), 0);
	assert_int_equal(n, 4);
	assert_true(v[0] == 0 && v[1] == 0.5f && v[2] == 1 && v[3] == 0.25f);
	free(v);
	assert_int_equal(graft_mnist_json_parse("{\"data\": []}", &v, &n, &err), 0);
	assert_int_equal(n, 0);
	free(v);
	assert_int_equal(graft_mnist_json_parse("{\"pixels\": [0]}", &v, &n, &err), GRAFT_EFORMAT);
	assert_non_null(strstr(err.msg, "no \"data\" array"));
	assert_null(v);
	assert_int_equal(graft_mnist_json_parse("{\"data\": [0, 2]}", &v, &n, &err), GRAFT_EFORMAT);
	assert_string_equal(err.msg, "value 1 of \"data\" is not a number in [0, 1]");
	assert_int_equal(graft_mnist_json_parse("{\"data\": [nan]}", &v, &n, &err), GRAFT_EFORMAT);
	assert_int_equal(graft_mnist_json_parse("{\"data\": [0.5", &v, &n, &err), GRAFT_EFORMAT);
	assert_int_equal(graft_mnist_json_parse("{\"data\": [0.5}", &v, &n, &err), GRAFT_EFORMAT);
	/* More values than the first buffer holds. */
	size_t count = 100000;
	char *big = malloc(count * 2 + 16), *p = big;
	p += sprintf(p, "{\"data\": [");
	for (size_t i = 0; i < count; i++)
		p += sprintf(p, i ? ",%d" : "%d", (int)(i & 1));
	sprintf(p, "]}");
	assert_int_equal(graft_mnist_json_parse(big, &v, &n, &err), 0);
	assert_int_equal(n, count);
	assert_true(v[count - 1] == 1 && v[count - 2] == 0);
	free(v);
	free(big);
}

/* ---- WAV ---- */

/* A WAV file in buf: fmt (tag, channels, rate, bits; extensible: tag 0xfffe with
 * sub-format sub), an odd-sized LIST chunk first when list, then data of n bytes
 * (claimed: claim, which may be more).  Returns its length. */
static size_t wav(unsigned char *buf, unsigned tag, unsigned sub, unsigned channels,
		  uint32_t rate, unsigned bits, int list, const void *data, uint32_t n,
		  uint32_t claim)
{
	size_t at = 12;
	unsigned fmt_size = tag == 0xfffe ? 40 : 16;
	unsigned char *p;

	memcpy(buf, "RIFF", 4);
	memcpy(buf + 8, "WAVE", 4);
	if (list) {
		memcpy(buf + at, "LIST\x03\0\0\0abc\0", 12);   /* 3 bytes, 1 of padding */
		at += 12;
	}
	memcpy(buf + at, "fmt ", 4);
	p = buf + at + 4;
	p[0] = (unsigned char)fmt_size; p[1] = p[2] = p[3] = 0;
	p += 4;
	memset(p, 0, fmt_size);
	p[0] = (unsigned char)tag; p[1] = (unsigned char)(tag >> 8);
	p[2] = (unsigned char)channels;
	memcpy(p + 4, &rate, 4);
	p[14] = (unsigned char)bits;
	if (tag == 0xfffe) {
		p[24] = (unsigned char)sub;
	}
	at += 8 + fmt_size;
	memcpy(buf + at, "data", 4);
	memcpy(buf + at + 4, &claim, 4);
	memcpy(buf + at + 8, data, n);
	at += 8 + n;
	uint32_t riff = (uint32_t)(at - 8);
	memcpy(buf + 4, &riff, 4);
	return at;
}

static void test_wav(void **state)
{
	static unsigned char buf[4096];
	const int16_t pcm[4] = {0, 1, -32768, 32767};
	const float fl[3] = {0.5f, -1.0f, 0.25f};
	struct graft_wav w;
	struct graft_err err = {0};
	size_t n;

	(void)state;
	n = wav(buf, 1, 0, 1, 16000, 16, 1, pcm, sizeof(pcm), sizeof(pcm));
	assert_int_equal(graft_wav_decode(&w, buf, n, &err), 0);
	assert_int_equal(w.rate, 16000);
	assert_int_equal(w.frames, 4);
	assert_true(w.samples[0] == 0 && w.samples[1] == 1 && w.samples[2] == -32768 &&
		    w.samples[3] == 32767);
	graft_wav_release(&w);
	n = wav(buf, 3, 0, 1, 8000, 32, 0, fl, sizeof(fl), sizeof(fl));
	assert_int_equal(graft_wav_decode(&w, buf, n, &err), 0);
	assert_true(w.rate == 8000 && w.frames == 3 && w.samples[0] == 16384 &&
		    w.samples[1] == -32768 && w.samples[2] == 8192);
	graft_wav_release(&w);
	n = wav(buf, 0xfffe, 1, 1, 16000, 16, 0, pcm, sizeof(pcm), sizeof(pcm));
	assert_int_equal(graft_wav_decode(&w, buf, n, &err), 0);
	assert_int_equal(w.frames, 4);
	graft_wav_release(&w);

	struct {
		unsigned tag, channels, bits;
		uint32_t n, claim;
		int code;
		const char *msg;
	} bad[] = {
		{1, 2, 16, 8, 8, GRAFT_EUNSUPPORTED, "2 channels: mono only"},
		{1, 1, 8, 8, 8, GRAFT_EUNSUPPORTED, "8-bit PCM samples: 16-bit PCM or 32-bit float"},
		{1, 1, 24, 6, 6, GRAFT_EUNSUPPORTED, "24-bit PCM samples"},
		{6, 1, 8, 8, 8, GRAFT_EUNSUPPORTED, "encoding 6: 16-bit PCM or 32-bit float"},
		{1, 1, 16, 8, 100, GRAFT_EFORMAT, "truncated: its data chunk holds 100 bytes, the "
		 "file 8 after it"},
		{1, 1, 16, 7, 7, GRAFT_EFORMAT, "a data chunk of 7 bytes is not a whole number of "
		 "2-byte samples"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		n = wav(buf, bad[i].tag, 0, bad[i].channels, 16000, bad[i].bits, 0, pcm, bad[i].n,
			bad[i].claim);
		assert_int_equal(graft_wav_decode(&w, buf, n, &err), bad[i].code);
		if (!strstr(err.msg, bad[i].msg))
			fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, bad[i].msg);
		assert_null(w.samples);
	}
	const float nan[1] = {NAN};
	n = wav(buf, 3, 0, 1, 16000, 32, 0, nan, sizeof(nan), sizeof(nan));
	assert_int_equal(graft_wav_decode(&w, buf, n, &err), GRAFT_EFORMAT);
	assert_non_null(strstr(err.msg, "sample 0 is not a finite number"));
	assert_int_equal(graft_wav_decode(&w, "RIFF\0\0\0\0AVI ", 12, &err), GRAFT_EFORMAT);
	assert_non_null(strstr(err.msg, "not a WAV file (no RIFF/WAVE header)"));
	assert_int_equal(graft_wav_decode(&w, "RIFF\4\0\0\0WAVE", 12, &err), GRAFT_EFORMAT);
	assert_non_null(strstr(err.msg, "no fmt chunk"));
	n = wav(buf, 1, 0, 1, 16000, 16, 0, pcm, sizeof(pcm), sizeof(pcm));
	assert_int_equal(graft_wav_decode(&w, buf, n - sizeof(pcm) - 8, &err), GRAFT_EFORMAT);
	assert_non_null(strstr(err.msg, "truncated: no data chunk"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_idx),
		cmocka_unit_test(test_idx_lying_headers),
		cmocka_unit_test(test_idx_damaged_gzip),
		cmocka_unit_test(test_png_decode_and_resize),
		cmocka_unit_test(test_image_refusals),
		cmocka_unit_test(test_mnist_json),
		cmocka_unit_test(test_wav),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
