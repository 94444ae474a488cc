/*
 * fuzz_wav.c: graft_wav_decode (graft-data audio's WAV files).  A file that decodes
 * must give at least zero samples, each finite and within the 16-bit range a PCM or a
 * [-1, 1] float sample maps to (floats beyond it are allowed: their range is the
 * file's), at a positive rate; one that does not must say why and hold nothing.
 */
#include <math.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct graft_wav w;
	struct graft_err err = {0};
	int rc = graft_wav_decode(&w, data, size, &err);

	if (rc) {
		fuzz_check_err(rc, &err, "graft_wav_decode");
		if (w.samples)
			fuzz_fail("graft_wav_decode failed but returned samples");
		return 0;
	}
	if (w.rate < 1 || w.frames < 0 || (size_t)w.frames > size / 2 || !w.samples)
		fuzz_fail("decoded %lld samples at %lld a second from %zu bytes",
			  (long long)w.frames, (long long)w.rate, size);
	for (int64_t i = 0; i < w.frames; i++)
		if (!isfinite(w.samples[i]))
			fuzz_fail("sample %lld is not finite", (long long)i);
	graft_wav_release(&w);
	return 0;
}
