#!/usr/bin/env python3
"""taprun.py TESTFILE [NAME...] - run a unittest file and print TAP.

One "ok N - Class.test" / "not ok N - Class.test" line per test (subtest
failures make their test "not ok"), "# SKIP reason" for skipped tests,
"not ok ... # TODO" for expected failures (XFAIL), tracebacks and captured test output as
"# " lines (captured output only for failed tests), and the plan "1..N" at the end (automake's tap-driver.sh accepts
a trailing plan). NAMEs restrict the run to tests whose id contains one.
Exit status 0 even when tests fail (the driver counts them); 1 with a
"Bail out!" line when the file cannot be imported or loaded.
"""

import importlib.util
import io
import os
import sys
import traceback
import unittest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


class TapResult(unittest.TestResult):
    def __init__(self, out):
        super().__init__()
        self.out = out
        self.n = 0
        self.current = None

    def emit(self, ok, name, directive="", details=""):
        self.n += 1
        line = "%s %d - %s" % ("ok" if ok else "not ok", self.n, name.replace("#", "\\#"))
        if directive:
            line += " # " + directive
        self.out.write(line + "\n")
        for d in details.rstrip("\n").splitlines() if details else ():
            self.out.write("# " + d + "\n")
        self.out.flush()

    @staticmethod
    def name(test):
        cls = type(test)
        if cls.__name__ == "_ErrorHolder":
            return str(test.description)
        return "%s.%s" % (cls.__name__, test._testMethodName)

    def startTest(self, test):
        super().startTest(test)
        self.current = {"ok": True, "directive": "", "details": [], "buf": io.StringIO()}
        self.saved = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = self.current["buf"]

    def stopTest(self, test):
        sys.stdout, sys.stderr = self.saved
        cur, self.current = self.current, None
        output = cur["buf"].getvalue()
        details = "".join(cur["details"])
        if output and not cur["ok"]:
            details += "output:\n" + output
        self.emit(cur["ok"], self.name(test), cur["directive"], details)
        super().stopTest(test)

    def _fail(self, test, err, label):
        text = "%s:\n%s" % (label, self._exc_info_to_string(err, test))
        if self.current is None:  # setUpClass/setUpModule and friends
            self.emit(False, self.name(test), "", text)
        else:
            self.current["ok"] = False
            self.current["details"].append(text)

    def addError(self, test, err):
        super().addError(test, err)
        self._fail(test, err, "ERROR")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._fail(test, err, "FAIL")

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            label = "FAIL" if issubclass(err[0], test.failureException) else "ERROR"
            self._fail(test, err, "%s in %s" % (label, subtest._subDescription()))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        reason = " ".join(str(reason).split())
        if self.current is None:
            self.emit(True, self.name(test), "SKIP " + reason)
        else:
            self.current["directive"] = "SKIP " + reason

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self.current["ok"] = False   # "not ok # TODO" is automake's XFAIL
        self.current["directive"] = "TODO expected failure"

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self.current["ok"] = False
        self.current["details"].append("unexpected success\n")


def filter_suite(suite, names):
    out = unittest.TestSuite()
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            out.addTests(filter_suite(t, names))
        elif any(n in t.id() for n in names):
            out.addTest(t)
    return out


def main(argv):
    # TAP goes to the original stdout; whatever else writes to fd 1 (child
    # processes included) is sent to stderr so that it cannot break the TAP.
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    if len(argv) < 2:
        out.write("Bail out! usage: taprun.py TESTFILE [NAME...]\n")
        return 1
    path = os.path.abspath(argv[1])
    for d in (TESTS_DIR, os.path.dirname(path)):
        if d not in sys.path:
            sys.path.insert(0, d)
    try:
        name = os.path.splitext(os.path.basename(path))[0]
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        suite = unittest.defaultTestLoader.loadTestsFromModule(module)
    except BaseException as e:  # noqa: B902 - anything here is a bail-out
        out.write("Bail out! cannot load %s: %s\n" % (argv[1], " ".join(str(e).split())))
        for line in traceback.format_exc().splitlines():
            out.write("# " + line + "\n")
        return 1
    if argv[2:]:
        suite = filter_suite(suite, argv[2:])
    result = TapResult(out)
    suite.run(result)
    if result.n == 0:
        out.write("1..0 # SKIP no tests\n")
    else:
        out.write("1..%d\n" % result.n)
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
