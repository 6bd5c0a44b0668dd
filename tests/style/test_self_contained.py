"""The repository speaks of itself only: no file points at documents that
are not in it (a design document kept elsewhere, an issue tracker's
numbers) or at one machine's paths. A reader with only this repository must
be able to follow every reference."""

import os
import re
import subprocess
import unittest

TOP = os.environ.get("top_srcdir") or os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                   "..", "..")
PATTERNS = [
    (re.compile(r"\.\./shared/"), "a path outside the repository"),
    (re.compile(r"design\.md"), "a design document that is not in the repository"),
    (re.compile(r"\b[Ii]ssue\s+#?\d+"), "an issue number"),
    (re.compile(r"/work/(main|wt|shared)\b"), "a path of one machine"),
]
SKIP_DIRS = {".git", "build", "build-asan", "test-results", "autom4te.cache", "debian/.debhelper"}
SKIP_EXT = (".bin", ".pem", ".key", ".o", ".lo", ".la", ".so", ".gz")


def files():
    try:
        out = subprocess.run(["git", "-C", TOP, "ls-files"], capture_output=True, text=True,
                             check=True).stdout.split()
        return [os.path.join(TOP, f) for f in out]
    except (OSError, subprocess.CalledProcessError):
        found = []
        for root, dirs, names in os.walk(TOP):
            dirs[:] = [d for d in dirs if os.path.relpath(os.path.join(root, d), TOP)
                       not in SKIP_DIRS and not d.startswith("build")]
            found += [os.path.join(root, n) for n in names]
        return found


class SelfContainedTest(unittest.TestCase):

    def test_no_reference_outside_the_repository(self):
        bad = []
        this = os.path.abspath(__file__)
        for path in files():
            if path.endswith(SKIP_EXT) or os.path.abspath(path) == this or not os.path.isfile(path):
                continue
            try:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
            except (UnicodeDecodeError, OSError):
                continue
            for n, line in enumerate(text.splitlines(), 1):
                for rx, what in PATTERNS:
                    if rx.search(line):
                        bad.append("%s:%d: %s: %s" % (os.path.relpath(path, TOP), n, what,
                                                      line.strip()[:100]))
        self.assertEqual(bad, [], "\n".join(bad))

    def test_the_patterns_catch_what_they_should(self):
        # one sample for each pattern, in its order, assembled from pieces
        # so that this file does not hold a reference of its own
        samples = ["see ." + "./shared/notes.txt", "the design" + ".md file",
                   "as " + "issue 7 says", "in /work" + "/main/build"]
        self.assertEqual(len(samples), len(PATTERNS))
        for (rx, what), text in zip(PATTERNS, samples):
            self.assertTrue(rx.search(text), "%s: %r" % (what, text))
        self.assertFalse(any(rx.search("see man/planetscale-deprovision.8") for rx, _ in PATTERNS))


if __name__ == "__main__":
    unittest.main()
