"""The include graph of src/ has no cycle.

A module is a stem of src/ (remove = remove.c + remove.h); module A depends
on module B when A.c or A.h includes B.h. A cycle (remove calling the
sender while the sender calls remove) makes two modules one in all but
name: neither can be read, tested or changed alone. The removal core never
names the sender: the command hands it the sender's hand-off instead."""

import os
import re
import unittest

TOP = os.environ.get("top_srcdir") or os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                   "..", "..")
SRC = os.path.join(TOP, "src")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def strip_comments(text):
    return re.sub(r"/\*.*?\*/", " ", text, flags=re.S)


def includes_of(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return INCLUDE.findall(strip_comments(f.read()))


def module_graph(files):
    """{module: set(modules it depends on)} from {file name: [included names]}."""
    stems = {os.path.splitext(n)[0] for n in files}
    graph = {s: set() for s in stems}
    for name, incs in files.items():
        a = os.path.splitext(name)[0]
        for inc in incs:
            b = os.path.splitext(os.path.basename(inc))[0]
            if b != a and b in stems:
                graph[a].add(b)
    return graph


def find_cycle(graph):
    """A cycle as a list of modules [a, b, ..., a], or None."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = {n: WHITE for n in graph}
    stack = []

    def visit(n):
        colour[n] = GREY
        stack.append(n)
        for m in sorted(graph[n]):
            if colour[m] == GREY:
                return stack[stack.index(m):] + [m]
            if colour[m] == WHITE:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        colour[n] = BLACK
        return None

    for n in sorted(graph):
        if colour[n] == WHITE:
            found = visit(n)
            if found:
                return found
    return None


def src_files():
    return {n: includes_of(os.path.join(SRC, n)) for n in sorted(os.listdir(SRC))
            if n.endswith((".c", ".h"))}


class IncludeGraphTest(unittest.TestCase):

    def test_no_cycle_in_src(self):
        files = src_files()
        self.assertIn("remove.c", files, "src/ not found at " + SRC)
        cycle = find_cycle(module_graph(files))
        self.assertIsNone(cycle, "include cycle in src/: " + " -> ".join(cycle or []))

    def test_the_removal_core_never_names_the_sender(self):
        files = src_files()
        for name in ("remove.c", "remove.h", "ctx.h"):
            senders = [i for i in files[name] if os.path.basename(i).startswith("sender")]
            self.assertEqual(senders, [], "src/%s includes %s" % (name, senders))

    def test_the_checker_finds_cycles(self):
        # the shape this test exists for: remove hands over to the sender,
        # which sends through remove
        files = {"remove.c": ["remove.h", "sender.h"], "remove.h": ["ctx.h"],
                 "sender.c": ["remove.h", "sender.h"], "sender.h": ["ctx.h"], "ctx.h": []}
        self.assertEqual(find_cycle(module_graph(files)), ["remove", "sender", "remove"])
        # a longer one through headers only
        files = {"a.h": ["b.h"], "b.h": ["c.h"], "c.h": ["a.h"], "a.c": ["a.h"]}
        self.assertEqual(find_cycle(module_graph(files)), ["a", "b", "c", "a"])
        # and none where there is none (a module including its own header)
        files = {"a.c": ["a.h", "b.h"], "a.h": [], "b.c": ["b.h"], "b.h": ["c.h"], "c.h": []}
        self.assertIsNone(find_cycle(module_graph(files)))
        # commented-out includes do not count
        self.assertEqual(INCLUDE.findall(strip_comments('/* #include "x.h" */\n#include "y.h"\n')),
                         ["y.h"])


if __name__ == "__main__":
    unittest.main()
