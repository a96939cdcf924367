"""Every link of README.md and docs/*.md resolves.

A relative link must name a file or folder that exists and that git does not
ignore (a link into build/ or bench/results/ would work only on the machine
that wrote it); a `#fragment` must match a heading of the target, slugged as
GitHub does. Links to other sites are not fetched (the tests have no network).
"""

import glob
import os
import re
import subprocess
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.abspath(os.environ.get("LOSSD_SOURCE_DIR", os.path.join(HERE, "..", "..")))
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to -."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def anchors(path):
    out = set()
    in_code = False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.lstrip().startswith("```"):
                in_code = not in_code
            elif not in_code and line.startswith("#"):
                out.add(slug(line.lstrip("#")))
    return out


def ignored(path):
    r = subprocess.run(["git", "-C", SOURCE, "check-ignore", "-q", path],
                       capture_output=True)
    return r.returncode == 0


def documents():
    return [os.path.join(SOURCE, "README.md")] + sorted(
        glob.glob(os.path.join(SOURCE, "docs", "*.md")))


class DocLinks(unittest.TestCase):

    def test_slug(self):
        self.assertEqual(slug(" 2. POST /v1/loss"), "2-post-v1loss")
        self.assertEqual(slug("Bearer tokens (`--tokens-file`)"), "bearer-tokens---tokens-file")

    def test_every_relative_link_resolves(self):
        checked, failures = 0, []
        for doc in documents():
            name = os.path.relpath(doc, SOURCE)
            in_code = False
            with open(doc, encoding="utf-8") as f:
                lines = f.readlines()
            for n, line in enumerate(lines, 1):
                if line.lstrip().startswith("```"):
                    in_code = not in_code
                    continue
                if in_code:
                    continue
                for m in LINK.finditer(line):
                    target = m.group(1) or m.group(2)
                    if re.match(r"^[a-z]+:", target):
                        continue  # another site, or mailto:
                    path, _, frag = target.partition("#")
                    dest = os.path.normpath(os.path.join(os.path.dirname(doc), path)) if path \
                        else doc
                    checked += 1
                    where = "%s line %d: %s" % (name, n, target)
                    if not os.path.exists(dest):
                        failures.append(where + ": no such file")
                    elif ignored(dest):
                        failures.append(where + ": git ignores it")
                    elif frag and dest.endswith(".md") and frag not in anchors(dest):
                        failures.append(where + ": no heading #" + frag)
        self.assertGreater(checked, 10)
        self.assertEqual(failures, [], "\n" + "\n".join(failures))


if __name__ == "__main__":
    unittest.main()
