"""grid.py: the four-case table and chart of examples/four-cases, from its work folder.

    grid.py --work W --seeds "1 2 3" --per-class N --epochs "SMALL LARGE" --large L
            --md results.md --svg chart.svg

Reads W/runs/CASE-STRATEGY-sSEED.json (graft-eval --json on the test set) and .seconds
(the training's wall time), and W/plans/CASE.json (graft-plan --json).  Writes a Markdown
table (test accuracy, mean and spread over the seeds, per case and strategy; the best
strategy; what graft-plan recommends and whether it is the best or within noise of it)
and an SVG bar chart with the spread as whiskers.  "Within noise": the recommended
strategy's mean is below the best mean by no more than the larger of the two standard
deviations (or 0.5 points with one seed).  Exit 1 when a run is missing.
"""
import argparse, json, math, os, statistics, sys

CASES = [("sim-small", "similar, small"), ("sim-large", "similar, large"),
         ("dif-small", "different, small"), ("dif-large", "different, large")]
GUIDANCE = {"sim-small": "head only", "sim-large": "upper part or all",
            "dif-small": "a moderate number of layers", "dif-large": "everything"}
STRATEGIES = ["head", "upper", "full", "random"]
LABELS = {"head": "head only", "upper": "upper blocks", "full": "full network",
          "random": "random init"}
COLOURS = {"head": "#4c72b0", "upper": "#55a868", "full": "#c44e52", "random": "#8c8c8c"}


def load(work, seeds):
    acc, secs, n_train = {}, {}, {}
    for case, _ in CASES:
        for s in STRATEGIES:
            a, t = [], []
            for seed in seeds:
                base = os.path.join(work, "runs", f"{case}-{s}-s{seed}")
                try:
                    a.append(100.0 * json.load(open(base + ".json"))["accuracy"])
                    t.append(float(open(base + ".seconds").read().split()[-1]))
                except (OSError, ValueError, KeyError) as e:
                    sys.exit(f"grid.py: {base}: {e}")
            acc[case, s], secs[case, s] = a, t
    plans = {}
    for case, _ in CASES:
        f = os.path.join(work, "plans", case + ".json")
        try:
            plans[case] = json.load(open(f))
        except (OSError, ValueError) as e:
            sys.exit(f"grid.py: {f}: {e}")
    return acc, secs, plans


def spread(v):
    return statistics.stdev(v) if len(v) > 1 else 0.0


def plan_strategy(p):
    """The strategy of the grid that graft-plan's freeze matches, or None."""
    f = p.get("freeze", "")
    if f == "--none" or p.get("train_blocks") == p.get("blocks"):
        return "full"
    return {"--last-blocks 1": "head", "--last-blocks 2": "upper"}.get(f)


def verdict(acc, case, rec):
    means = {s: statistics.mean(acc[case, s]) for s in STRATEGIES}
    best = max(means, key=means.get)
    if rec is None:
        return best, "not in the grid"
    if rec == best:
        return best, "the best"
    noise = max(spread(acc[case, rec]), spread(acc[case, best]))
    noise = noise if noise > 0 else 0.5
    gap = means[best] - means[rec]
    if gap <= noise:
        return best, f"within noise of the best ({gap:.1f} points behind, noise {noise:.1f})"
    return best, f"worse than the best by {gap:.1f} points (noise {noise:.1f})"


def markdown(acc, secs, plans, a):
    seeds = a.seeds.split()
    small_e, large_e = a.epochs.split()
    out = []
    out.append("| case | guidance | " + " | ".join(LABELS[s] for s in STRATEGIES) +
               " | best | graft-plan | its pick |")
    out.append("|---" * (len(STRATEGIES) + 5) + "|")
    for case, name in CASES:
        best, v = verdict(acc, case, plan_strategy(plans[case]))
        cells = []
        for s in STRATEGIES:
            m, d = statistics.mean(acc[case, s]), spread(acc[case, s])
            cell = f"{m:.1f} ± {d:.1f}" if len(seeds) > 1 else f"{m:.1f}"
            cells.append(f"**{cell}**" if s == best else cell)
        p = plans[case]
        rec = plan_strategy(p)
        pick = (f"case {p['case']}: {p['freeze']}" +
                (f" ({LABELS[rec]})" if rec else ""))
        out.append(f"| {name} | {GUIDANCE[case]} | " + " | ".join(cells) +
                   f" | {LABELS[best]} | {pick} | {v} |")
    out.append("")
    out.append(f"Test accuracy in percent, mean ± standard deviation over {len(seeds)} "
               f"seed{'s' if len(seeds) > 1 else ''} ({', '.join(seeds)}). Small: "
               f"{a.per_class} samples per class, {small_e} epochs; large: "
               + (f"{a.large} per class" if a.large else "all training samples") +
               f", {large_e} epochs; the head alone 10 times as many epochs (it trains on "
               f"cached features). Batch 32, AdamW (0.03 for the head alone, 0.003 "
               f"otherwise), cosine schedule; every run starts from a new seeded head.")
    out.append("")
    out.append("graft-plan's view of each case (on the first seed's data):")
    out.append("")
    out.append("| case | samples per class | similarity | graft-plan's case | train |")
    out.append("|---|---|---|---|---|")
    for case, name in CASES:
        p = plans[case]
        out.append(f"| {name} | {p['samples_per_class']:g} | {p['similarity']:.3f} "
                   f"({p['method']}) | {p['case']} | `{p['freeze']}` `{p['train']}` |")
    out.append("")
    out.append("Training wall time in seconds, mean over the seeds:")
    out.append("")
    out.append("| case | " + " | ".join(LABELS[s] for s in STRATEGIES) + " |")
    out.append("|---" * (len(STRATEGIES) + 1) + "|")
    for case, name in CASES:
        out.append(f"| {name} | " + " | ".join(f"{statistics.mean(secs[case, s]):.1f}"
                                               for s in STRATEGIES) + " |")
    f = os.path.join(a.work, "compare.json")
    if os.path.exists(f):
        c = json.load(open(f))
        t = c["torch"]
        out.append("")
        out.append(f"The same recipe in PyTorch 1.13 (similar, large, full network, first "
                   f"seed; {c['threads']} thread{'s' if c['threads'] > 1 else ''} each, one "
                   f"after the other): graft-train {c['graft_seconds']:.1f} s in all "
                   f"(reading the data and planning included), PyTorch {t['seconds']:.1f} s "
                   f"for its training loop alone: graft "
                   f"{t['seconds'] / c['graft_seconds']:.2f}x as fast. Test accuracy: graft "
                   f"{100 * c['graft_accuracy']:.1f}%, PyTorch {100 * t['accuracy']:.1f}%.")
    return "\n".join(out) + "\n"


def svg(acc, plans):
    w, h, left, right, top, bottom = 760, 360, 56, 16, 36, 64
    pw, ph = w - left - right, h - top - bottom
    lo = 10 * math.floor(min(min(v) for v in acc.values()) / 10 - 0.5)
    lo = max(0, min(lo, 80))
    y = lambda v: top + ph * (1 - (v - lo) / (100 - lo))
    e = []
    e.append(f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
             f'viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">')
    e.append(f'<rect width="{w}" height="{h}" fill="white"/>')
    e.append(f'<text x="{w / 2:.1f}" y="20" text-anchor="middle" font-size="14">'
             'Test accuracy by case and strategy (whiskers: min to max over seeds)</text>')
    for t in range(int(lo), 101, 10):
        e.append(f'<line x1="{left}" y1="{y(t):.1f}" x2="{w - right}" y2="{y(t):.1f}" '
                 'stroke="#ddd"/>')
        e.append(f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{t}%</text>')
    group = pw / len(CASES)
    bar = group * 0.8 / len(STRATEGIES)
    for i, (case, name) in enumerate(CASES):
        x0 = left + i * group + group * 0.1
        for j, s in enumerate(STRATEGIES):
            v = acc[case, s]
            m = statistics.mean(v)
            x = x0 + j * bar
            e.append(f'<rect x="{x:.1f}" y="{y(m):.1f}" width="{bar - 2:.1f}" '
                     f'height="{y(lo) - y(m):.1f}" fill="{COLOURS[s]}"/>')
            cx = x + (bar - 2) / 2
            e.append(f'<line x1="{cx:.1f}" y1="{y(min(v)):.1f}" x2="{cx:.1f}" '
                     f'y2="{y(max(v)):.1f}" stroke="black"/>')
            if plan_strategy(plans[case]) == s:
                e.append(f'<text x="{cx:.1f}" y="{y(max(v)) - 4:.1f}" '
                         'text-anchor="middle" font-size="10">plan</text>')
        e.append(f'<text x="{x0 + group * 0.4:.1f}" y="{h - bottom + 18}" '
                 f'text-anchor="middle">{name}</text>')
    e.append(f'<line x1="{left}" y1="{y(lo):.1f}" x2="{w - right}" y2="{y(lo):.1f}" '
             'stroke="black"/>')
    for j, s in enumerate(STRATEGIES):
        x = left + j * 150
        e.append(f'<rect x="{x}" y="{h - 22}" width="12" height="12" fill="{COLOURS[s]}"/>')
        e.append(f'<text x="{x + 16}" y="{h - 12}">{LABELS[s]}</text>')
    e.append("</svg>")
    return "\n".join(e) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True)
    ap.add_argument("--seeds", required=True)
    ap.add_argument("--per-class", required=True)
    ap.add_argument("--epochs", required=True)
    ap.add_argument("--large", default="")
    ap.add_argument("--md", required=True)
    ap.add_argument("--svg", required=True)
    a = ap.parse_args()
    acc, secs, plans = load(a.work, a.seeds.split())
    for path, text in ((a.md, markdown(acc, secs, plans, a)), (a.svg, svg(acc, plans))):
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
