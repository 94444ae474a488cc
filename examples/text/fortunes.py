"""fortunes.py OUT.tsv CATEGORY...: Debian's fortune collections (package fortunes,
/usr/share/games/fortunes/CATEGORY: entries between lines holding a single '%') as a
TSV of text and label, one fortune a row, its category the label; whitespace (line
breaks and tabs inside a fortune) becomes single spaces, empty entries are skipped, and
entries keep their files' order.  Run it with /usr/bin/python3."""
import sys

DIR = "/usr/share/games/fortunes"


def entries(path):
    text = open(path, encoding="utf-8", errors="replace").read()
    for e in text.split("\n%\n"):
        e = " ".join(e.replace("%", " ").split()) if e.strip() == "%" else " ".join(e.split())
        if e:
            yield e


def main():
    out, cats = sys.argv[1], sys.argv[2:]
    with open(out, "w", encoding="utf-8") as f:
        f.write("text\tlabel\n")
        for c in cats:
            for e in entries("%s/%s" % (DIR, c)):
                f.write("%s\t%s\n" % (e, c))


if __name__ == "__main__":
    main()
