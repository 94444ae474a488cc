"""synth.py KIND OUT_DIR --split train|test --count N --seed S [--phrase P] [--augment]:
speech for a wake word, synthesised by espeak-ng and dirtied by sox and numpy, as 16 kHz
16-bit mono WAV files (what graft-data audio reads).  Run it with /usr/bin/python3.

KIND
  positive    the phrase, one utterance a file, its end 0 to 0.25 s before the file's
              (2 s at most: a longer one loses its start)
  confusable  phrases that sound like it ("hey microsoft", "my craft", ...), one a file
  speech      fortunes (Debian's package fortunes) read aloud, one a file; --count
              fortunes, --minutes caps the total
  noise       white, pink or brown noise and near silence, 2 s a file
  stream      --minutes of fortunes read aloud with pauses and noise between them, in
              files of 5 minutes: speech as a detector hears it all day (cut into
              training clips; held out, what false accepts are counted on)

--split says whose voices speak: the training voices or the held-out ones, which share no
espeak-ng language nor variant with them (so a test voice was never heard in training).
Every choice (voice, rate, pitch, gain, noise, reverberation, timing) is drawn from a
generator seeded with --seed and the file's number: the same command writes the same
files, and make -j runs them apart.  --augment (the training clips): half the speech
also shifted in pitch, equalised and reverberated more widely (speak()).
"""
import argparse
import os
import random
import subprocess
import tempfile
import wave

import numpy as np

RATE = 16000
LANGS = {
    "train": ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029"],
    "test": ["en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-us-nyc"],
}
VARIANTS = {
    "train": ["m1", "m2", "m3", "m4", "f1", "f2", "f3", "Alex", "Andy", "Annie", "adam",
              "anika", "aunty", "belinda", "benjamin", "boris", "caleb", "david", "ed",
              "edward", "john", "linda", "max", "michel", "norbert", "paul", "pedro",
              "quincy", "rob", "robert", "steph", "travis", "victor", "zac", "Alicia",
              "Andrea", "Denis", "Diogo", "Gene", "Gene2", "Henrique", "Marco", "Mario",
              "Nguyen", "antonio", "edward2", "m8", "marcelo", "miguel", "pablo", "steph2",
              "steph3"],
    "test": ["m5", "m6", "m7", "f4", "f5", "Mike", "Michael", "Lee", "Hugo", "Jacky",
             "grandma", "grandpa", "iven", "shelby", "sandro", "gustave"],
}
CONFUSABLE = ["hey microsoft", "my craft", "hey minecraft", "hey mike", "my crop",
              "hey there", "microsoft", "hey mister", "aircraft", "hey micro",
              "hey my cat", "high croft", "hey mike rose", "macro", "hey my friend"]
FORTUNES = ["computers", "people", "science", "work", "wisdom", "literature"]


def voice(rng, split):
    return "%s+%s" % (rng.choice(LANGS[split]), rng.choice(VARIANTS[split]))


def speak(text, v, rng, tmp, augment=False):
    """text read by espeak-ng in voice v at a random rate and pitch, resampled to 16 kHz
    with reverberation from sox (a third of the time): float samples in [-1, 1].
    augment: half the time, instead, a wider range of sox's effects, for training clips
    (a voice the head never heard differs in more than espeak-ng's rate and pitch): the
    spectrum shifted up to 4 semitones either way (half of those times), up to 3 bands of
    equalisation of +-10 dB, and reverberation 3 times in 5, from rooms of every size."""
    raw, out = os.path.join(tmp, "raw.wav"), os.path.join(tmp, "out.wav")
    subprocess.run(["espeak-ng", "-v", v, "-s", str(rng.randint(120, 210)),
                    "-p", str(rng.randint(25, 75)), "-g", str(rng.randint(0, 4)),
                    "-w", raw, text], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    effects = ["rate", str(RATE)]
    if augment and rng.random() < 0.5:
        if rng.random() < 0.5:
            effects = ["pitch", str(rng.randint(-400, 400))] + effects
        for _ in range(rng.randint(0, 3)):
            hz = np.exp(rng.uniform(np.log(100), np.log(6000)))
            effects += ["equalizer", str(int(hz)), "1q", str(rng.randint(-10, 10))]
        if rng.random() < 0.6:
            effects += ["reverb", str(rng.randint(10, 90)), str(rng.randint(20, 80)),
                        str(rng.randint(30, 100))]
    elif rng.random() < 1 / 3:
        effects += ["reverb", str(rng.randint(10, 60))]
    # -R: sox's dither seeded alike on every run, so the same command writes the same
    # files (unseeded, its 1-LSB noise in near silence moved the mel model's decibel
    # floor: features by up to 6.5 of 100, heads trained on them by 2 points of recall)
    subprocess.run(["sox", "-R", raw, "-r", str(RATE), "-b", "16", out] + effects,
                   check=True, stderr=subprocess.DEVNULL)
    with wave.open(out) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float64) / 32768
    return x


def coloured_noise(rng, n, colour):
    white = np.random.default_rng(rng.getrandbits(32)).standard_normal(n)
    if colour == "white":
        return white
    spectrum = np.fft.rfft(white)
    f = np.arange(len(spectrum)) + 1.0
    spectrum /= np.sqrt(f) if colour == "pink" else f
    x = np.fft.irfft(spectrum, n)
    return x / (np.std(x) + 1e-12)


def dirty(x, rng):
    """Gain -12 to 0 dB, then noise of a random colour at 5 to 40 dB below the speech
    (none a quarter of the time)."""
    x = x * 10 ** (-rng.uniform(0, 12) / 20)
    if rng.random() < 0.75:
        level = np.sqrt(np.mean(x ** 2) + 1e-12) * 10 ** (-rng.uniform(5, 40) / 20)
        x = x + level * coloured_noise(rng, len(x), rng.choice(["white", "pink", "brown"]))
    return x


def write(path, x):
    x = np.clip(np.round(x * 32767), -32768, 32767).astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(x.tobytes())


def fortunes(rng, count):
    """count fortunes of at most 200 characters, from the collections in turn."""
    found = []
    for c in FORTUNES:
        text = open("/usr/share/games/fortunes/" + c, encoding="utf-8", errors="replace").read()
        found += [" ".join(e.split()) for e in text.split("\n%\n") if 20 < len(e) < 200]
    rng.shuffle(found)
    return found[:count]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["positive", "confusable", "speech", "noise", "stream"])
    ap.add_argument("out")
    ap.add_argument("--split", choices=["train", "test"], required=True)
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--minutes", type=float, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--phrase", default="hey mycroft")
    ap.add_argument("--augment", action="store_true")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    base = random.Random("%s %s %d" % (a.kind, a.split, a.seed))
    texts = fortunes(base, max(a.count, 2000)) if a.kind in ("speech", "stream") else []
    with tempfile.TemporaryDirectory() as tmp:
        if a.kind == "stream":
            stream(a, base, texts, tmp)
            return
        total = 0.0
        for i in range(a.count):
            rng = random.Random("%s %s %d %d" % (a.kind, a.split, a.seed, i))
            if a.kind == "noise":
                n = 2 * RATE
                colour = rng.choice(["white", "pink", "brown", "silence"])
                level = 10 ** (-rng.uniform(20, 60) / 20) if colour != "silence" else 1e-4
                x = level * coloured_noise(rng, n, colour if colour != "silence" else "white")
            else:
                text = (a.phrase if a.kind == "positive" else
                        rng.choice(CONFUSABLE) if a.kind == "confusable" else texts[i])
                x = dirty(speak(text, voice(rng, a.split), rng, tmp, a.augment), rng)
                if a.kind == "positive":     # its end shortly before the clip's,
                    x = np.concatenate([x, np.zeros(int(rng.uniform(0, 0.25) * RATE))])
                    x = x[-2 * RATE:]            # which is 2 s at most
            write(os.path.join(a.out, "%s-%04d.wav" % (a.kind, i)), x)
            total += len(x) / RATE / 60
            if a.minutes and total >= a.minutes:
                break


def stream(a, base, texts, tmp):
    """--minutes of held-apart speech in files of 5 minutes: fortunes read by the split's
    voices with 0.2 to 3 s of noise or silence between them."""
    files = int(np.ceil(a.minutes / 5))
    t = 0
    for f in range(files):
        rng = random.Random("stream %s %d %d" % (a.split, a.seed, f))
        parts, length = [], 0
        while length < min(5, a.minutes - 5 * f) * 60 * RATE:
            x = dirty(speak(texts[t % len(texts)], voice(rng, a.split), rng, tmp, a.augment),
                      rng)
            t += 1
            gap = int(rng.uniform(0.2, 3) * RATE)
            level = 10 ** (-rng.uniform(30, 60) / 20)
            parts += [x, level * coloured_noise(rng, gap, rng.choice(["white", "pink",
                                                                        "brown"]))]
            length += len(x) + gap
        write(os.path.join(a.out, "stream-%d-%02d.wav" % (a.seed, f)), np.concatenate(parts))


if __name__ == "__main__":
    main()
