"""The outcome table (src/outcome.c) and what the documentation says of it
agree: every audit word the table writes is described in
planetscale-deprovision(8) AUDIT, every word the PAM helper can answer is in
pam_planetscale(8) RETURN VALUES and its table of PAM codes, and the module
(src/pam_planetscale.c) knows every one of them. A word renamed in the code
and not in the pages (or the other way round) fails here."""

import os
import re
import unittest

TOP = os.environ.get("top_srcdir") or os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                   "..", "..")


def read(*parts):
    with open(os.path.join(TOP, *parts), encoding="utf-8") as f:
        return f.read()


def helper_defines():
    """PS_HELPER_X -> word, from src/helper.h."""
    return dict(re.findall(r'#define\s+(PS_HELPER_[A-Z_]+)\s+"([^"]+)"', read("src", "helper.h")))


def outcome_rows():
    """(status, spool, exit, audit, priority, helper word) of every row."""
    defs = helper_defines()
    rows = []
    for m in re.finditer(r'\{\s*(PS_ST_[A-Z_]+),\s*(PS_SPOOL_[A-Z]+),\s*(\d+),\s*"([^"]+)",\s*'
                         r'(LOG_[A-Z]+),\s*(PS_HELPER_[A-Z_]+|"[^"]+"),\s*\d+\s*\}',
                         read("src", "outcome.c")):
        word = m.group(6)
        word = word.strip('"') if word.startswith('"') else defs[word]
        rows.append((m.group(1), m.group(2), int(m.group(3)), m.group(4), m.group(5), word))
    return rows


def man_words(text):
    """Words set in bold (.B x, .BR x ...) with the roff escapes undone."""
    out = set()
    for line in text.splitlines():
        m = re.match(r"^\.B[IR]?\s+(.*)$", line)
        if m:
            for w in re.findall(r'"[^"]*"|\S+', m.group(1)):
                out.add(w.strip('"').replace("\\-", "-").rstrip(",;"))
    return out


def section(text, name):
    m = re.search(r'^\.SH "?%s"?\s*$(.*?)(?=^\.SH )' % re.escape(name), text, re.S | re.M)
    if not m:
        raise AssertionError("no section %s" % name)
    return m.group(1)


class OutcomeDocsTest(unittest.TestCase):

    def setUp(self):
        self.rows = outcome_rows()

    def test_the_table_is_read(self):
        statuses = {r[0] for r in self.rows}
        self.assertEqual(len(self.rows), 15, self.rows)
        self.assertIn("PS_ST_HELD", statuses)
        # only a confirmed removal settles an entry
        settle = {r[0] for r in self.rows if r[1] == "PS_SPOOL_SETTLE"}
        self.assertEqual(settle, {"PS_ST_REMOVED", "PS_ST_ABSENT"})
        # exit codes of the command
        ex = {r[0]: r[2] for r in self.rows}
        self.assertEqual((ex["PS_ST_QUEUED"], ex["PS_ST_HELD"], ex["PS_ST_HELD_CONFIG"],
                          ex["PS_ST_RECORDED"], ex["PS_ST_INVALID"], ex["PS_ST_SCHEDULED"]),
                         (75, 77, 78, 78, 64, 75))
        # every helper word names one status
        words = [r[5] for r in self.rows]
        self.assertEqual(len(words), len(set(words)), words)

    def test_every_audit_word_is_in_the_audit_section(self):
        audit = man_words(section(read("man", "planetscale-deprovision.8"), "AUDIT"))
        for r in self.rows:
            self.assertIn(r[3], audit, "audit word %s (%s) is not in planetscale-deprovision(8) "
                          "AUDIT" % (r[3], r[0]))
        for extra in ("dead-letter", "dropped", "cancelled"):
            self.assertIn(extra, audit)

    def test_every_helper_word_is_in_pam_planetscale_8_and_the_module(self):
        page = read("man", "pam_planetscale.8")
        ret = section(page, "RETURN VALUES")
        listed = man_words(ret)
        table = {line.split("|")[0].replace("\\-", "-") for line in ret.splitlines()
                 if line.count("|") == 3}
        module = read("src", "pam_planetscale.c")
        defs = helper_defines()
        # what pam-helper can answer: the table's words for statuses that
        # ps_remove_login or the helper's own checks produce (the helper
        # always records, so never the not-recorded NOT_QUEUED and REFUSED)
        answers = {r[5] for r in self.rows if r[0] not in ("PS_ST_DRYRUN", "PS_ST_NOT_QUEUED",
                                                            "PS_ST_REFUSED", "PS_ST_INVALID")}
        answers |= {defs["PS_HELPER_IGNORED"], defs["PS_HELPER_NOT_DUE"]}
        for w in sorted(answers):
            self.assertIn(w, listed, "helper word %s is not described in pam_planetscale(8)" % w)
            self.assertIn(w, table, "helper word %s has no row in pam_planetscale(8)'s table" % w)
            name = [k for k, v in defs.items() if v == w]
            self.assertTrue(name and any(n in module for n in name),
                            "the module does not know the word %s" % w)


if __name__ == "__main__":
    unittest.main()
