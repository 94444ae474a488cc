/*
 * data.h: the private header of lib/data/: samples made as they are needed.  transform.c
 * turns one stored sample into what the model sees (an image decoded, cropped, resized,
 * mirrored, colour-jittered and normalised; a float image mirrored or shifted), each
 * random choice drawn from a generator keyed by the sample and the epoch alone;
 * loader.c runs those transforms ahead of training on worker threads.
 */
#ifndef GRAFT_DATA_H
#define GRAFT_DATA_H

#include "format/format.h"

/* A region of an image in pixel coordinates: pixel x covers [x, x + 1). */
struct box {
	double x0, y0, x1, y1;
};

/* How a compact image becomes a float sample (c, oh, ow). */
struct image_transform {
	int64_t oh, ow;
	int64_t c;              /* channels out: 1 (luminance) or 3 */
	int64_t resize;         /* evaluation: the shorter side's size before the centre crop */
	double scale_min;       /* random-resized crop: the smallest area fraction */
	double jitter;          /* colour jitter's strength (brightness, contrast, saturation) */
	const double *mean, *std;       /* (c) each, or NULL */
};

/* The generator of a sample's random choices in an epoch: the same for the same seed,
 * sample and epoch, whatever the batch, thread or order it is made in. */
void data_sample_rng(struct graft_rng *r, uint64_t seed, int64_t sample, int64_t epoch);

/* torchvision's Resize(resize) then CenterCrop(oh, ow) on an h x w image, as the region
 * of the original image that becomes the output. */
void data_eval_box(int64_t h, int64_t w, int64_t oh, int64_t ow, int64_t resize,
		   struct box *b);
/* torchvision's RandomResizedCrop.get_params (area scale_min to 1, aspect 3/4 to 4/3,
 * ten tries, then the centre at the nearest allowed aspect), drawn from r. */
void data_rrc_box(int64_t h, int64_t w, double scale_min, struct graft_rng *r,
		  struct box *b);
/* Resamples box b of px (uint8 (h, w, cin), cin 1 or 3) to dst, float (c, oh, ow) in
 * [0, 1], with PIL's bilinear filter, widened when shrinking so that every source pixel
 * counts (antialiasing, as torchvision's resize of PIL images and antialias=True);
 * mirrored left-right when flip; three channels become one as luminance (ITU-R BT.601),
 * one becomes three by repetition.  tmp: room for data_resample_tmp floats. */
size_t data_resample_tmp(int64_t h, int64_t ow, int64_t cin);
void data_resample(const struct graft_array *px, const struct box *b, int64_t oh, int64_t ow,
		   int64_t c, int flip, float *dst, float *tmp);
/* torchvision's ColorJitter(s, s, s) on dst (c, n pixels) in [0, 1]: brightness,
 * contrast and saturation factors from [1 - s, 1 + s], applied in a random order. */
void data_jitter(float *dst, int64_t c, int64_t n, double s, struct graft_rng *r);

/* Room for need floats in *tmp (*n of them so far), growing it: 0, or -1 out of memory
 * (*tmp and *n as they were). */
int data_scratch(float **tmp, size_t *n, size_t need);
/* Compact image i of im into dst as t says: for training (r not NULL, augment the
 * enum graft_augment_flags) or for evaluation (r NULL: the centre crop, nothing random).
 * tmp grows as needed (*tmp_n floats; free it).  *decode_s: the time spent decoding. */
int data_image_sample(const struct graft_images *im, int64_t i, const struct image_transform *t,
		      unsigned augment, struct graft_rng *r, float *dst, float **tmp,
		      size_t *tmp_n, double *decode_s, struct graft_err *err);
/* A float image sample s (c, h, w), in place: mirrored (GRAFT_AUGMENT_FLIP, half the
 * time) and shifted (GRAFT_AUGMENT_CROP, by up to 1/8 of each side, zero-filled), drawn
 * from r.  tmp: room for c * h * w floats. */
void data_float_augment(float *s, int64_t c, int64_t h, int64_t w, unsigned augment,
			struct graft_rng *r, float *tmp);

#endif
