#!/usr/bin/env python3
"""Mutation testing of stack/ and the fault engine (see docs/testing.md).

Plants one operator change at a time and asks whether a test notices. To keep a
run short, every mutant of every selected file is compiled in at once as a
*schema*: each change is guarded by a run-time switch (the environment variable
WRENCH_MUTANT), so one build serves all mutants and each mutant costs only a test
run. A change the schema cannot express in some context (a constant expression,
say) falls back to a build of its own.

Standard library only (Python 3.11 as in Debian 12).
"""

import argparse
import concurrent.futures
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DEFAULT_FILES = [
    "stack/seq.h", "stack/ring_buffer.h", "stack/checksum.cc", "stack/ip.h", "stack/ip.cc",
    "stack/tcp_wire.h", "stack/tcp_wire.cc", "stack/segment.h", "stack/segment.cc",
    "stack/tcp_state.cc", "stack/simulator.h", "stack/simulator.cc", "stack/tcp_endpoint.h",
    "stack/tcp_endpoint.cc", "stack/sack_scoreboard.h", "stack/sack_scoreboard.cc",
    "stack/congestion.h", "stack/congestion.cc", "proxy/fault/rule.cc", "proxy/fault/fault_engine.cc",
]
# The stack tests alone judge stack/ mutants (stack/ builds and tests without proxy/);
# rule and fault engine mutants are judged by the tests of those two files.
STACK_TESTS = ["seq_test", "ring_buffer_test", "tcp_wire_test", "segment_test", "ip_test",
               "checksum_test", "tcp_state_test", "simulator_test", "sack_scoreboard_test",
               "congestion_test", "tcp_profile_test", "tcp_endpoint_test", "tcp_loss_recovery_test"]
PROXY_TESTS = {"proxy/fault/rule.cc": ["rule_test", "fault_engine_test"],
               "proxy/fault/fault_engine.cc": ["fault_engine_test", "rule_test"]}
# The test that most likely notices a mutant of a file runs first.
FIRST_TEST = {"stack/seq.h": "seq_test", "stack/ring_buffer.h": "ring_buffer_test",
              "stack/checksum.cc": "checksum_test", "stack/ip.h": "ip_test", "stack/ip.cc": "ip_test",
              "stack/tcp_wire.h": "tcp_wire_test", "stack/tcp_wire.cc": "tcp_wire_test",
              "stack/segment.h": "segment_test", "stack/segment.cc": "segment_test",
              "stack/tcp_state.cc": "tcp_state_test", "stack/simulator.h": "simulator_test",
              "stack/simulator.cc": "simulator_test", "stack/sack_scoreboard.h": "sack_scoreboard_test",
              "stack/sack_scoreboard.cc": "sack_scoreboard_test", "stack/congestion.h": "congestion_test",
              "stack/congestion.cc": "congestion_test"}
FUZZERS = ["tcp_endpoint", "endpoint_pair"]
EQUIVALENT_MARK = "mutate: equivalent"

# ---------------------------------------------------------------------------
# Tokens

PUNCT = sorted("""<<= >>= <=> ->* ... :: -> ++ -- << >> <= >= == != && || += -= *= /= %= &= |= ^=
               .* { } [ ] ( ) ; : , . ? ~ ! + - * / % ^ & | = < > #""".split(), key=len, reverse=True)
ASSIGN = {"=", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "<<=", ">>="}
KEYWORDS_NOT_STMT = {"return", "if", "for", "while", "do", "switch", "case", "default", "break",
                     "continue", "goto", "else", "using", "typedef", "static_assert", "co_return",
                     "throw", "try", "catch", "namespace", "template", "struct", "class", "enum",
                     "public", "private", "protected", "friend", "delete", "co_await", "co_yield"}
DECL_WORDS = {"const", "static", "constexpr", "auto", "unsigned", "signed", "inline", "thread_local",
              "volatile", "mutable", "extern"}

TOKEN_RE = re.compile(r"""
    (?P<ws>[ \t\r\n]+)
  | (?P<comment>//[^\n]*|/\*.*?\*/)
  | (?P<raw>(?:u8|u|U|L)?R"(?P<delim>[^(\s]*)\(.*?\)(?P=delim)")
  | (?P<str>(?:u8|u|U|L)?"(?:\\.|[^"\\\n])*")
  | (?P<chr>(?:u8|u|U|L)?'(?:\\.|[^'\\\n])+')
  | (?P<num>\.?[0-9](?:[0-9a-zA-Z_.]|'[0-9a-zA-Z]|[eEpP][+-])*)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
""", re.S | re.X)


@dataclass
class Tok:
    kind: str  # ident num punct str
    text: str
    start: int
    end: int
    line: int


def tokenize(src):
    toks = []
    i, n, line = 0, len(src), 1
    at_line_start = True
    while i < n:
        if at_line_start:
            m = re.match(r"[ \t]*#", src[i:i + 200])
            if m:  # preprocessor line, with continuations
                j = i
                while True:
                    e = src.find("\n", j)
                    if e < 0:
                        e = n
                        break
                    if src[e - 1] == "\\":
                        j = e + 1
                        continue
                    break
                line += src.count("\n", i, e)
                i = e
                continue
        m = TOKEN_RE.match(src, i)
        if m:
            kind = m.lastgroup if m.lastgroup != "delim" else "raw"
            if m.group("raw") is not None:
                kind = "raw"
            text = m.group(0)
            if kind in ("ident", "num", "str", "chr", "raw"):
                toks.append(Tok("str" if kind in ("raw", "chr") else kind, text, i, m.end(), line))
            nl = text.count("\n")
            line += nl
            if kind in ("ws", "comment"):
                at_line_start = at_line_start or nl > 0 or (kind == "ws" and i == 0)
                if nl:
                    at_line_start = True
            else:
                at_line_start = False
            i = m.end()
            continue
        for p in PUNCT:
            if src.startswith(p, i):
                toks.append(Tok("punct", p, i, i + len(p), line))
                i += len(p)
                break
        else:
            i += 1
        at_line_start = False
    return toks


# ---------------------------------------------------------------------------
# Mutants

@dataclass
class Mutant:
    file: str
    line: int
    kind: str      # ror, lcr, aor, uoi, bool, int, del
    orig: str
    repl: str
    start: int     # span of the original text the plain mutant replaces
    end: int
    func: str
    mid: str = ""  # stable id
    num: int = 0   # run-time switch value
    # schema edits: (pos, order key, text) insertions and the operator replacement
    schema: list = field(default_factory=list)
    schema_ok: bool = True
    cexpr: bool = False  # in a constant expression: a survivor is confirmed by its own build
    status: str = ""
    detail: str = ""
    seconds: float = 0.0

    def change(self):
        if self.kind == "del":
            return "remove `%s`" % self.orig
        return "`%s` -> `%s`" % (self.orig, self.repl)


ROR = {"<": "<=", "<=": "<", ">": ">=", ">=": ">", "==": "!=", "!=": "=="}
AOR = {"+": "-", "-": "+", "+=": "-=", "-=": "+="}
LCR = {"&&": "||", "||": "&&"}
UOI = {"++": "--", "--": "++"}
OPCODE = {"<": 1, "<=": 2, ">": 3, ">=": 4, "==": 5, "!=": 6, "+": 7, "-": 8, "+=": 9, "-=": 10}


def spaced(src, t):
    return (t.start > 0 and src[t.start - 1] in " \n" and t.end < len(src) and src[t.end] in " \n")


PARTNER = {")": "(", "]": "[", "}": "{", "(": ")", "[": "]", "{": "}"}


def match_bracket(toks, k, step):
    """Index of the bracket matching the one at k, searching backwards (step -1) from
    a closer or forwards (step 1) from an opener; the end of the search if none."""
    depth, want = 0, toks[k].text
    j = k
    while 0 <= j < len(toks):
        if toks[j].kind == "punct" and toks[j].text == want:
            depth += 1
        elif toks[j].kind == "punct" and toks[j].text == PARTNER[want]:
            depth -= 1
            if depth == 0:
                return j
        j += step
    return j - step if step > 0 else -1


def match_back(toks, k):
    return match_bracket(toks, k, -1)


def match_fwd(toks, k):
    return match_bracket(toks, k, 1)


def operand_back(toks, k, stops):
    """First token index of the operand left of k (stops: tokens of lower precedence)."""
    j = k - 1
    while j >= 0:
        t = toks[j]
        if t.kind == "punct" and t.text in ")]}":
            j = match_back(toks, j) - 1
            continue
        if t.kind == "punct" and t.text in "([{":
            break
        if t.text in stops:
            break
        j -= 1
    return j + 1


def operand_fwd(toks, k, stops):
    """Last token index of the operand right of k."""
    j = k + 1
    while j < len(toks):
        t = toks[j]
        if t.kind == "punct" and t.text in "([{":
            j = match_fwd(toks, j) + 1
            continue
        if t.kind == "punct" and t.text in ")]}":
            break
        if t.text in stops:
            break
        j += 1
    return j - 1


def postfix_operand_back(toks, k):
    j = k - 1
    while j >= 0:
        t = toks[j]
        if t.kind == "punct" and t.text in ")]":
            j = match_back(toks, j) - 1
            continue
        if t.kind == "ident" or t.text in (".", "->", "::"):
            j -= 1
            continue
        break
    return j + 1


def prefix_operand_fwd(toks, k):
    j = k + 1
    while j < len(toks):
        t = toks[j]
        if t.kind == "punct" and t.text in "([":
            j = match_fwd(toks, j) + 1
            continue
        if t.kind == "ident" or t.text in (".", "->", "::"):
            j += 1
            continue
        break
    return j - 1


def is_declaration(toks, a, b):
    """Whether tokens a..b (a statement) declare something."""
    for j in range(a, b + 1):
        t = toks[j]
        if t.text in ("=", "(", "{", ";", "[") or t.text in ASSIGN:
            return False
        if t.kind == "ident" and t.text in DECL_WORDS and j == a:
            return True
        if t.kind != "ident" or j == a:
            continue
        prev = toks[j - 1]
        if prev.kind == "ident" or prev.text in (">", ">>"):
            return True
        if prev.text in ("*", "&", "&&") and j - 2 >= a and (toks[j - 2].kind == "ident" or toks[j - 2].text == ">"):
            return True
    return False


def function_name(toks, k):
    """The name of the function whose body opens at toks[k] == '{'."""
    j = k - 1
    while j >= 0 and toks[j].kind == "ident" and toks[j].text in ("const", "override", "noexcept", "mutable", "final"):
        j -= 1
    if j >= 0 and toks[j].text == ")":
        o = match_back(toks, j)
        if o > 0 and toks[o - 1].kind == "ident":
            # a constructor's initialiser list: walk back to the parameter list
            return toks[o - 1].text
        if o > 0 and toks[o - 1].text == "]":
            return "lambda"
    return "?"


def find_mutants(path, src):
    toks = tokenize(src)
    lines = src.split("\n")
    skip_lines = set()
    skip_ops = {}  # line -> operators marked equivalent there

    def statement_lines(i):
        # Line i and the lines that continue what it starts: while a parenthesis is
        # open or the code ends in an operator, the next line is the same statement.
        span, depth = [i], 0
        while i <= len(lines):
            code = lines[i - 1].split("//")[0].rstrip()
            depth += code.count("(") - code.count(")")
            if i + 1 > len(lines) or (depth <= 0 and not re.search(r"(=|[-+*/%&|^<>?:,])$", code)):
                break
            i += 1
            span.append(i)
        return span

    for i, l in enumerate(lines, 1):
        if l.strip().startswith("//") and EQUIVALENT_MARK in l:
            # a marker on a line of its own is about the next line that is not a comment
            i += 1
            while i <= len(lines) and lines[i - 1].strip().startswith("//"):
                i += 1
        mark = re.search(EQUIVALENT_MARK + r"(?: (\S+))? \(", l)
        for at in statement_lines(i) if EQUIVALENT_MARK in l else [i]:
            if mark and mark.group(1):
                skip_ops.setdefault(at, set()).update(mark.group(1).split(","))
            elif EQUIVALENT_MARK in l or "static_assert" in l:
                skip_lines.add(at)
    mutants = []
    # brace context: stack of (kind, function name); kind code|other
    stack = [("other", "", False)]
    paren = 0
    angle = 0  # inside a template argument list (approximate: unspaced < after a name)
    stmt_start = True
    func = ""
    k = 0
    n = len(toks)

    def constant_context(k):
        if stack[-1][2] or angle > 0 or (k and toks[k - 1].text == "case"):
            return True
        # The bound of an array declared here (`uint8_t b[4] = ...;`): a constant.
        if (k >= 2 and toks[k - 1].text == "[" and toks[k - 2].kind == "ident" and k + 2 < len(toks)
                and toks[k + 1].text == "]" and toks[k + 2].text in ("=", ";", "{", "[")):
            return True
        j = k - 1
        while j >= 0 and toks[j].text not in (";", "{", "}"):
            if toks[j].text in ("constexpr", "consteval", "case", "enum"):
                return True
            j -= 1
        return False

    def add(t, kind, repl, start=None, end=None, orig=None):
        if t.line in skip_lines or (orig or t.text) in skip_ops.get(t.line, ()):
            return
        m = Mutant(path, t.line, kind, orig if orig is not None else t.text, repl,
                   start if start is not None else t.start, end if end is not None else t.end,
                   stack[-1][1] or "(file)")
        m.cexpr = constant_context(k)
        mutants.append(m)

    while k < n:
        t = toks[k]
        code = stack[-1][0] == "code"
        prevt = toks[k - 1] if k else None
        # statement removal
        if code and paren == 0 and stmt_start and t.text not in (";", "{", "}") and t.text not in KEYWORDS_NOT_STMT:
            # find the end of the statement
            j, ok = k, True
            while j < n and toks[j].text != ";":
                if toks[j].text in ("(", "["):
                    j = match_fwd(toks, j)
                elif toks[j].text in ("{", "}") or toks[j].text in KEYWORDS_NOT_STMT:
                    ok = False
                    break
                elif toks[j].text == ":" and j + 1 < n and toks[j + 1].text != ":":
                    ok = False  # a label or a ternary: leave alone
                    break
                j += 1
            declares = is_declaration(toks, k, j) or "ASSIGN" in t.text  # ASSIGN_OR_RETURN(T x, ...)
            if ok and j < n and not declares and (t.kind == "ident" or t.text in ("*", "++", "--")):
                text = src[t.start:toks[j].end]
                if (t.line not in skip_lines and "del" not in skip_ops.get(t.line, ())
                        and not any(l in skip_lines for l in range(t.line, toks[j].line + 1))):
                    m = Mutant(path, t.line, "del", " ".join(text.split()), "", t.start, toks[j].end,
                               stack[-1][1] or "(file)")
                    m.cexpr = constant_context(k)
                    mutants.append(m)
        stmt_start = False
        if t.kind == "punct":
            if t.text == "{":
                pt = prevt.text if prevt else ""
                if paren > 0:
                    kind = "other"
                elif pt == ")" or pt in ("const", "override", "noexcept", "mutable", "else", "do", "try"):
                    kind = "code"
                elif code and pt in (";", "{", "}", ":"):
                    kind = "code"
                else:
                    kind = "other"
                name = stack[-1][1]
                if kind == "code" and stack[-1][0] != "code":
                    name = function_name(toks, k)
                stack.append((kind, name, constant_context(k)))
                stmt_start = True
            elif t.text == "}":
                popped = stack.pop() if len(stack) > 1 else stack[-1]
                stmt_start = popped[0] == "code"
            elif t.text == ";":
                stmt_start = paren == 0
            elif t.text == "<" and not spaced(src, t) and prevt is not None and prevt.kind == "ident":
                angle += 1
            elif t.text in (">", ">>") and angle > 0 and not spaced(src, t):
                angle = max(0, angle - len(t.text))
            elif t.text in ("(", "["):
                paren += 1
            elif t.text in (")", "]"):
                paren = max(0, paren - 1)
                # the body of `if (...)`/`for (...)`/`while (...)` without braces
            if t.text in ROR and spaced(src, t):
                add(t, "ror", ROR[t.text])
            elif t.text in AOR and spaced(src, t):
                add(t, "aor", AOR[t.text])
            elif t.text in LCR and spaced(src, t):
                add(t, "lcr", LCR[t.text])
            elif t.text in UOI:
                add(t, "uoi", UOI[t.text])
        elif t.kind == "ident" and t.text in ("true", "false"):
            add(t, "bool", "false" if t.text == "true" else "true")
        elif t.kind == "num":
            m = re.fullmatch(r"([0-9]+)([uUlL]*)", t.text)
            if m and int(m.group(1)) <= 4096 and not (m.group(1).startswith("0") and len(m.group(1)) > 1):
                v = int(m.group(1))
                nv = 1 if v == 0 else (0 if v == 1 else v + 1)
                # a literal template argument or array bound is left alone
                pure = prevt is not None and prevt.text == "=" and k + 1 < n and toks[k + 1].text == ";" \
                    and stack[-1][0] == "other"
                if not pure and not (prevt and prevt.text in ("<", ",") and not spaced(src, prevt) and
                        k + 1 < n and toks[k + 1].text in (">", ">>")):
                    add(t, "int", str(nv) + m.group(2))
        k += 1
    # stable ids: file, function, the line's code (its comment left out), the token's
    # column in it, the change, and which occurrence of that same key this is
    seen = {}
    for m in mutants:
        ltext = lines[m.line - 1]
        col = m.start - (src.rfind("\n", 0, m.start) + 1) - (len(ltext) - len(ltext.lstrip()))
        code = ltext.split("//")[0].strip() if "//" in ltext and '"' not in ltext else ltext.strip()
        key = "|".join([m.file, m.func, code, str(col), m.kind, m.orig, m.repl])
        seen[key] = seen.get(key, 0) + 1
        m.mid = hashlib.sha1((key + "|" + str(seen[key])).encode()).hexdigest()[:12]
    build_schema(src, toks, mutants)
    return mutants


def build_schema(src, toks, mutants):
    """Fills m.schema: edits that guard the mutant by ::wrench_mutant::On(num)."""
    index = {t.start: i for i, t in enumerate(toks)}
    for m in mutants:
        k = index.get(m.start)
        if m.kind in ("ror", "aor"):
            tag = " (::wrench_mutant::Tag<@ID@, %d>{}) %s" % (OPCODE[m.orig], m.orig)
            m.schema = [(m.end, 0, 0, tag)]
        elif m.kind in ("bool", "int"):
            m.schema = [(m.start, 1, 0, "(::wrench_mutant::On(@ID@) ? %s : " % m.repl), (m.end, -1, 0, ")")]
        elif m.kind == "del":
            m.schema = [(m.start, 1, m.end - m.start, "if (!::wrench_mutant::On(@ID@)) { "),
                        (m.end, -1, m.end - m.start, " }")]
        elif m.kind == "lcr":
            if m.orig == "&&":
                stops = {"||", "?", ":", ",", ";", "return", "co_return", "throw"} | ASSIGN
                rstops = stops | {"&&"}
            else:
                stops = {"?", ":", ",", ";", "return", "co_return", "throw"} | ASSIGN
                rstops = stops | {"||"}
            a = operand_back(toks, k, stops)
            b = operand_fwd(toks, k, rstops)
            if a >= k or b <= k:
                m.schema_ok = False
                continue
            span = toks[b].end - toks[a].start
            m.schema = [(toks[a].start, 1, span,
                         "::wrench_mutant::Logic<@ID@, %d>([&]() -> bool { return static_cast<bool>(" %
                         (1 if m.orig == "&&" else 0)),
                        (toks[b].end, -1, span, "); })")]
            m.replace = (m.start, m.end, "); }, [&]() -> bool { return static_cast<bool>(")
        elif m.kind == "uoi":
            prev = toks[k - 1] if k else None
            postfix = prev is not None and (prev.kind == "ident" or prev.text in (")", "]")) and \
                prev.end == m.start
            if postfix:
                a = postfix_operand_back(toks, k)
                operand = src[toks[a].start:m.start]
                s, e = toks[a].start, m.end
                new = operand + m.repl
            else:
                b = prefix_operand_fwd(toks, k)
                if b <= k:
                    m.schema_ok = False
                    continue
                operand = src[m.end:toks[b].end]
                s, e = m.start, toks[b].end
                new = m.repl + operand
            if "\n" in src[s:e]:
                m.schema_ok = False
                continue
            m.schema = [(s, 1, e - s, "(::wrench_mutant::On(@ID@) ? %s : " % new), (e, -1, e - s, ")")]


def apply_schema(src, mutants):
    edits = []
    replaces = []
    for m in mutants:
        if not m.schema_ok:
            continue
        for pos, side, span, text in m.schema:
            edits.append((pos, side, span, text.replace("@ID@", str(m.num))))
        if m.kind == "lcr":
            replaces.append(m.replace)
    # at one position: closing texts (side -1) first, innermost first; then opening
    # texts, outermost first
    def key(e):
        pos, side, span, _ = e
        return (pos, 0 if side == -1 else (2 if side == 0 else 1), span if side == -1 else -span)
    edits.sort(key=key)
    out = []
    last = 0
    rep = {s: (e, t) for s, e, t in replaces}
    ei = 0
    i = 0
    positions = sorted(set([e[0] for e in edits] + list(rep.keys())))
    for pos in positions:
        out.append(src[last:pos])
        last = pos
        while ei < len(edits) and edits[ei][0] == pos:
            out.append(edits[ei][3])
            ei += 1
        if pos in rep:
            e, t = rep[pos]
            out.append(t)
            last = e
    out.append(src[last:])
    return "".join(out)


def apply_plain(src, m):
    return src[:m.start] + m.repl + src[m.end:]


SCHEMA_HEADER = r"""// Run-time switch of the mutation runner's schema build (scripts/mutate.py).
#pragma once
#if __cplusplus >= 202002L
#include <cstdlib>
namespace wrench_mutant {
inline int Active() {
  static const int id = [] {
    const char* e = std::getenv("WRENCH_MUTANT");
    return e ? std::atoi(e) : 0;
  }();
  return id;
}
// In a constant expression the original stands: a mutant there shows only in a build
// of its own (the runner confirms such survivors that way).
constexpr bool On(int id) {
  if (__builtin_is_constant_evaluated()) return false;
  return Active() == id;
}
template <int Id, int Op> struct Tag {};
template <class L, int Id, int Op> struct Left { const L& l; };
template <class R, int Id, int Op> struct Right { const R& r; };
// A change that does not compile for these operand types is reported through
// Invalid<Id>'s deprecation warning and left out.
template <int Id> [[deprecated("wrench_mutant_invalid")]] constexpr void Invalid() {}
#define WRENCH_MUTANT_OP(op, code, alt)                                                    \
  template <class L, int Id>                                                               \
  constexpr Left<L, Id, code> operator op(const L& l, Tag<Id, code>) { return {l}; }       \
  template <class L, class R, int Id>                                                      \
  constexpr auto operator op(Left<L, Id, code> a, const R& r) {                            \
    using T = decltype(a.l op r);                                                          \
    if constexpr (requires { static_cast<T>(a.l alt r); }) {                               \
      if (On(Id)) return static_cast<T>(a.l alt r);                                        \
    } else {                                                                               \
      Invalid<Id>();                                                                       \
    }                                                                                      \
    return a.l op r;                                                                       \
  }
WRENCH_MUTANT_OP(<, 1, <=)
WRENCH_MUTANT_OP(<=, 2, <)
WRENCH_MUTANT_OP(>, 3, >=)
WRENCH_MUTANT_OP(>=, 4, >)
WRENCH_MUTANT_OP(==, 5, !=)
WRENCH_MUTANT_OP(!=, 6, ==)
WRENCH_MUTANT_OP(+, 7, -)
WRENCH_MUTANT_OP(-, 8, +)
#undef WRENCH_MUTANT_OP
// `a += b` is right-associative: `a += tag += b` takes b first.
template <class R, int Id> constexpr Right<R, Id, 9> operator+=(Tag<Id, 9>, const R& r) { return {r}; }
template <class L, class R, int Id> constexpr L& operator+=(L& l, Right<R, Id, 9> b) {
  if constexpr (requires { l -= b.r; }) {
    if (On(Id)) return l -= b.r;
  } else {
    Invalid<Id>();
  }
  return l += b.r;
}
template <class R, int Id> constexpr Right<R, Id, 10> operator-=(Tag<Id, 10>, const R& r) { return {r}; }
template <class L, class R, int Id> constexpr L& operator-=(L& l, Right<R, Id, 10> b) {
  if constexpr (requires { l += b.r; }) {
    if (On(Id)) return l += b.r;
  } else {
    Invalid<Id>();
  }
  return l -= b.r;
}
template <int Id, int And, class A, class B> constexpr bool Logic(A a, B b) {
  if (On(Id) ? !And : And) return a() && b();
  return a() || b();
}
}  // namespace wrench_mutant
#endif
"""

# ---------------------------------------------------------------------------
# Build and run


class Sources:
    """Writes mutated sources and puts every original back on any exit."""

    def __init__(self):
        self.originals = {}

    def write(self, path, text):
        full = os.path.join(ROOT, path)
        if path not in self.originals:
            with open(full, encoding="utf-8") as f:
                self.originals[path] = f.read()
        with open(full, "w", encoding="utf-8") as f:
            f.write(text)

    def restore(self):
        """Puts every original back; returns the paths that do not read back as it."""
        differ = []
        for path, text in self.originals.items():
            full = os.path.join(ROOT, path)
            with open(full, "w", encoding="utf-8") as f:
                f.write(text)
            with open(full, encoding="utf-8") as f:
                if f.read() != text:
                    differ.append(path)
        self.originals = {}
        return differ


SOURCES = Sources()


def on_signal(signum, _frame):
    SOURCES.restore()
    print("\ninterrupted: sources restored", file=sys.stderr)
    sys.exit(128 + signum)


def log(*a):
    print(*a, flush=True)


def run(cmd, timeout=None, env=None, cwd=None):
    """Runs cmd; returns (rc, output), rc None on timeout (process group killed)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                         cwd=cwd or ROOT, start_new_session=True, text=True, errors="replace")
    try:
        out, _ = p.communicate(timeout=timeout)
        return p.returncode, out
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        return None, out


def configure(build, jobs, fuzz=False):
    os.makedirs(build, exist_ok=True)
    header = os.path.join(build, "wrench_mutant.h")
    with open(header, "w") as f:
        f.write(SCHEMA_HEADER)
    flags = "-O1 -g0 -include %s" % header
    cmd = ["cmake", "-S", ROOT, "-B", build, "-G", "Ninja", "-DCMAKE_BUILD_TYPE=None",
           "-DCMAKE_CXX_FLAGS=" + flags, "-DWRENCH_BENCH=OFF", "-DWRENCH_MUTATION=ON",
           "-DBUILD_SHARED_LIBS=ON", "-DCMAKE_LINK_DEPENDS_NO_SHARED=ON",
           "-DCMAKE_GTEST_DISCOVER_TESTS_DISCOVERY_MODE=PRE_TEST"]
    if shutil.which("ccache"):
        cmd.append("-DCMAKE_CXX_COMPILER_LAUNCHER=ccache")
    if fuzz:
        cmd += ["-DCMAKE_C_COMPILER=clang-14", "-DCMAKE_CXX_COMPILER=clang++-14", "-DWRENCH_FUZZ=ON",
                "-DWRENCH_SANITIZE=OFF"]
    rc, out = run(cmd)
    if rc != 0:
        sys.exit("cmake configure failed:\n" + out)


def tests_for(path):
    if path in PROXY_TESTS:
        return list(PROXY_TESTS[path])
    first = FIRST_TEST.get(path, "tcp_endpoint_test")
    return [first] + [t for t in STACK_TESTS if t != first]


def build(build_dir, targets, jobs, timeout=3600):
    t0 = time.time()
    rc, out = run(["ninja", "-C", build_dir, "-j", str(jobs), "-k", "0"] + targets, timeout=timeout)
    return rc, out, time.time() - t0


def failing_lines(out, path):
    """Line numbers of `path` that the compiler complains about."""
    lines = set()
    base = re.escape(path)
    for m in re.finditer(r"(?:^|[\s/])" + base + r":(\d+):\d+: error:", out, re.M):
        lines.add(int(m.group(1)))
    return lines


def test_binary(build_dir, name):
    return os.path.join(build_dir, "tests", name)


# The two long tests (seconds each) run after every quick test of every binary.
SLOW_TESTS = "TcpEndpointLong.*:TcpEndpointProperty.*"


def run_tests(build_dir, tests, num, timeout):
    env = dict(os.environ)
    env["WRENCH_MUTANT"] = str(num)
    env["GTEST_FAIL_FAST"] = "1"
    env["GTEST_BRIEF"] = "1"
    t0 = time.time()
    passes = [(name, "-" + SLOW_TESTS) for name in tests]
    passes += [(name, SLOW_TESTS) for name in tests if name == "tcp_endpoint_test"]
    for name, filt in passes:
        left = timeout - (time.time() - t0)
        if left <= 0:
            return "killed", "timeout", time.time() - t0
        rc, out = run([test_binary(build_dir, name), "--gtest_filter=" + filt], timeout=left, env=env)
        if rc is None:
            return "killed", "timeout (%s)" % name, time.time() - t0
        if rc != 0:
            failed = re.findall(r"^\[  FAILED  \] (\S+)", out, re.M)
            why = failed[0] if failed else ("exit %d" % rc if rc > 0 else "signal %d" % -rc)
            return "killed", "%s: %s" % (name, why), time.time() - t0
    return "survived", "", time.time() - t0


def run_fuzzers(fuzz_build, num, seconds):
    env = dict(os.environ)
    env["WRENCH_MUTANT"] = str(num)
    for f in FUZZERS:
        exe = os.path.join(fuzz_build, "fuzz", f)
        corpus = os.path.join(ROOT, "corpus", f)
        dict_ = os.path.join(ROOT, "fuzz", f + ".dict")
        # New inputs go to a scratch folder, never into corpus/.
        scratch = os.path.join(fuzz_build, "scratch-%s" % f)
        shutil.rmtree(scratch, ignore_errors=True)
        os.makedirs(scratch)
        rc, out = run([exe, "-max_total_time=%d" % seconds, "-seed=1", "-dict=" + dict_,
                       "-close_fd_mask=3", "-timeout=5", "-rss_limit_mb=2048",
                       "-artifact_prefix=%s/" % scratch, scratch, corpus],
                      timeout=seconds + 60, env=env, cwd=fuzz_build)
        if rc is None:
            return "killed", "fuzz %s: timeout" % f
        if rc != 0:
            return "killed", "fuzz %s: exit %d" % (f, rc)
    return "survived", ""


# ---------------------------------------------------------------------------

def run_group(args, name, group, by_file):
    targets = []
    for m in group:
        for t in tests_for(m.file):
            if t not in targets:
                targets.append(t)
    log("== %s: %d mutants; baseline build of %s" % (name, len(group), " ".join(targets)))
    rc, out, secs = build(args.build_dir, targets, args.jobs)
    if rc != 0:
        sys.exit("the unmutated build fails:\n" + out[-4000:])
    log("  %.0f s" % secs)
    # schema build: all mutants of the group at once, off by default
    files_used = sorted({m.file for m in group})
    invalid_nums = set()
    for attempt in range(8):
        for path in files_used:
            SOURCES.write(path, apply_schema(by_file[path], [m for m in group if m.file == path]))
        rc, out, secs = build(args.build_dir, targets, args.jobs)
        for mo in re.finditer(r"wrench_mutant::Invalid\(\) \[with int Id = (\d+)\]", out):
            invalid_nums.add(int(mo.group(1)))
        log("schema build %d: %s in %.0f s (%d mutants in the schema)" %
            (attempt + 1, "ok" if rc == 0 else "errors", secs, sum(m.schema_ok for m in group)))
        if rc == 0:
            break
        dropped = 0
        for path in files_used:
            bad = failing_lines(out, path)
            for m in group:
                if m.file == path and m.schema_ok and m.line in bad:
                    m.schema_ok = False
                    dropped += 1
        if dropped == 0:
            # An error on a line without mutants is most likely a removed statement that
            # declared a name used below it: leave out the removals just above.
            for path in files_used:
                bad = failing_lines(out, path)
                for m in group:
                    if (m.file == path and m.schema_ok and m.kind == "del" and
                            any(0 <= b - m.line <= 40 for b in bad)):
                        m.schema_ok = False
                        dropped += 1
        if dropped == 0:
            # errors we cannot pin on a line: build those files' mutants one by one
            errfiles = [p for p in files_used if p in out] or files_used
            log("  unattributed errors in %s; those mutants build one by one" % errfiles)
            for m in group:
                if m.file in errfiles:
                    m.schema_ok = False
    else:
        sys.exit("schema build keeps failing:\n" + out[-4000:])
    # the schema with no mutant active must pass everything
    status, detail, secs = run_tests(args.build_dir, targets, 0, 600)
    if status != "survived":
        sys.exit("the tests fail with no mutant active (%s); fix that first" % detail)
    log("unmutated tests pass in %.1f s" % secs)
    for m in group:
        if m.num in invalid_nums:
            m.schema_ok = True
            m.status, m.detail = "invalid", "does not compile"
    timeout = args.timeout or max(10.0, 5 * secs)
    log("per-mutant timeout %.0f s; %d test runs at a time" % (timeout, args.jobs))
    todo = [m for m in group if m.schema_ok and m.status != "invalid"]

    def one(m):
        m.status, m.detail, m.seconds = run_tests(args.build_dir, tests_for(m.file), m.num, timeout)
        return m

    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for i, m in enumerate(pool.map(one, todo), 1):
            log("%-9s %s:%d %s %s  [%d/%d]" % (m.status, m.file, m.line, m.change(), m.detail, i, len(todo)))
    # mutants the schema cannot hold, and survivors whose change the schema kept out of
    # constant expressions: a build each
    solo = [m for m in group if m.status != "invalid" and (not m.schema_ok or (m.status == "survived" and m.cexpr))]
    log("%d mutants need a build of their own" % len(solo))
    for i, m in enumerate(solo, 1):
        SOURCES.write(m.file, apply_plain(by_file[m.file], m))
        rc, out, secs = build(args.build_dir, tests_for(m.file), args.jobs)
        if rc != 0:
            m.status, m.detail = "invalid", "does not compile"
        else:
            m.status, m.detail, m.seconds = run_tests(args.build_dir, tests_for(m.file), 0, timeout)
        SOURCES.write(m.file, apply_schema(by_file[m.file], [x for x in group if x.file == m.file]))
        log("%-9s %s:%d %s %s (own build, %.0f s)  [%d/%d]" %
            (m.status, m.file, m.line, m.change(), m.detail, secs, i, len(solo)))
    # optional: the stateful fuzzers on the survivors
    survivors = [m for m in group if m.status == "survived" and m.schema_ok]
    if args.fuzz and survivors and name == "stack":
        fuzz_dir = args.build_dir + "-fuzz"
        if not shutil.which("clang++-14"):
            log("fuzz stage skipped: clang++-14 (the fuzz preset's compiler) is not installed")
        else:
            configure(fuzz_dir, args.jobs, fuzz=True)
            for path in files_used:
                SOURCES.write(path, apply_schema(by_file[path], [m for m in group if m.file == path and m.schema_ok]))
            rc, out, secs = build(fuzz_dir, FUZZERS, args.jobs)
            if rc != 0:
                log("fuzz stage skipped: the fuzz build failed:\n" + out[-2000:])
            else:
                log("fuzz build: %.0f s" % secs)
                # With no mutant active the fuzzers must pass, or every survivor would
                # count as killed.
                st, det = run_fuzzers(fuzz_dir, 0, args.fuzz)
                if st != "survived":
                    log("fuzz stage skipped: the fuzzers fail with no mutant active (%s)" % det)
                    survivors = []
                t0 = time.time()
                for m in survivors:
                    st, det = run_fuzzers(fuzz_dir, m.num, args.fuzz)
                    if st == "killed":
                        m.status, m.detail = "killed", det
                    log("%-9s %s:%d %s %s (fuzz)" % (st, m.file, m.line, m.change(), det))
                if survivors:
                    log("fuzz stage: %d survivors in %.0f s" % (len(survivors), time.time() - t0))
    SOURCES.restore()


def select(args, mutants):
    rng = random.Random(args.seed)
    if args.sample and args.sample < len(mutants):
        mutants = sorted(rng.sample(mutants, args.sample), key=lambda m: (m.file, m.start))
    return mutants


def load_killed(path):
    killed = {}
    if not os.path.exists(path):
        return killed
    with open(path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            killed[(parts[0], parts[1])] = parts
    return killed


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", nargs="+", help="files to mutate (default: stack/ and the fault engine)")
    ap.add_argument("--seed", type=int, default=1, help="seed of --sample (default 1)")
    ap.add_argument("--sample", type=int, default=0, help="a random subset of this many mutants")
    ap.add_argument("--timeout", type=float, default=0,
                    help="seconds per mutant's tests (default: 5 times the unmutated run, at least 10)")
    ap.add_argument("--jobs", type=int, default=2, help="build jobs and test runs at a time (default 2)")
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build", "mutate"))
    ap.add_argument("--results", default=None, help="TSV of every mutant (default <build-dir>/results.tsv)")
    ap.add_argument("--list", action="store_true", help="list the mutants and stop")
    ap.add_argument("--group", choices=["stack", "proxy"],
                    help="run only the stack/ or the proxy/ part of the selection")
    ap.add_argument("--fuzz", type=float, default=0, metavar="SECONDS",
                    help="also run the stateful fuzzers this long on each survivor of the tests")
    ap.add_argument("--survivors-of", metavar="RESULTS",
                    help="run again only the mutants that survived in this results file (after adding "
                         "tests); the others there keep their status, and the report covers them all")
    ap.add_argument("--killed-file", default=os.path.join(ROOT, "tests", "mutation", "killed.tsv"))
    ap.add_argument("--update-killed", action="store_true",
                    help="merge this run's results into --killed-file: its killed mutants join, "
                         "its survivors leave, the others stay")
    ap.add_argument("--ci", action="store_true",
                    help="run a seeded sample (--sample, default 20) of the mutants in --killed-file; "
                         "fail if one survives")
    args = ap.parse_args()
    files = args.files or DEFAULT_FILES
    files = [os.path.relpath(os.path.abspath(f), ROOT) if os.path.exists(f) else f for f in files]

    everything = []
    by_file = {}
    for path in files:
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            src = f.read()
        ms = find_mutants(path, src)
        by_file[path] = src
        everything += ms

    if args.ci:
        killed = load_killed(args.killed_file)
        if not killed:
            sys.exit("no killed set in %s: run a full run with --update-killed first" % args.killed_file)
        pool = [m for m in everything if (m.file, m.mid) in killed]
        missing = len(killed) - len(pool)
        args.sample = args.sample or 20
        chosen = select(args, pool)
        log("ci: %d of %d killed mutants still exist (%d gone with their code); running %d, seed %d" %
            (len(pool), len(killed), missing, len(chosen), args.seed))
    elif args.survivors_of:
        prior = {}
        with open(args.survivors_of) as f:
            for line in f:
                if line.startswith("#"):
                    continue
                p = line.rstrip("\n").split("\t")
                prior[(p[0], p[1])] = p
        chosen = []
        carried = []
        for m in everything:
            p = prior.get((m.file, m.mid))
            if p is None:
                continue  # not in that run (a sample, or code since changed)
            if p[5] == "survived":
                chosen.append(m)
            else:
                m.status, m.detail, m.seconds = p[5], p[6], float(p[7] or 0)
                carried.append(m)
        log("%d survivors to run again, %d keep their status from %s" %
            (len(chosen), len(carried), args.survivors_of))
    else:
        chosen = select(args, everything)

    report = chosen + (carried if args.survivors_of else [])
    if args.list:
        for m in chosen:
            print("%s\t%s:%d\t%s\t%s" % (m.mid, m.file, m.line, m.kind, m.change()))
        print("%d mutants" % len(chosen))
        return 0

    for i, m in enumerate(chosen, 1):
        m.num = i
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    results = args.results or os.path.join(args.build_dir, "results.tsv")
    t_start = time.time()
    try:
        configure(args.build_dir, args.jobs)
        # stack/ and proxy/ mutants build and run apart: the stack's tests do not link
        # proxy/, so a schema of a stack header rebuilds no proxy code.
        groups = []
        for name, pred in (("stack", lambda f: not f.startswith("proxy/")),
                           ("proxy", lambda f: f.startswith("proxy/"))):
            ms = [m for m in chosen if pred(m.file)]
            if ms:
                groups.append((name, ms))
        for name, group in groups:
            if args.group and name != args.group:
                for m in group:
                    m.status = "skipped"
                continue
            run_group(args, name, group, by_file)
    finally:
        differ = SOURCES.restore()
    # The check reads the files back rather than asking git, so it works in a
    # source tree that is not a clone.
    if differ:
        print("WARNING: sources differ from their originals after restoring: " + ", ".join(differ),
              file=sys.stderr)
    else:
        log("sources restored (every mutated file reads back as its original)")

    # report
    report = [m for m in report if m.status != "skipped"]
    os.makedirs(os.path.dirname(os.path.abspath(results)), exist_ok=True)
    with open(results, "w") as f:
        f.write("# file\tid\tline\tkind\tchange\tstatus\tdetail\tseconds\n")
        for m in report:
            f.write("\t".join([m.file, m.mid, str(m.line), m.kind, m.change(), m.status, m.detail,
                               "%.2f" % m.seconds]) + "\n")
    log("\nscore per file (killed / (killed + survived); invalid = does not compile)")
    log("%-24s %7s %7s %8s %7s %6s" % ("file", "mutants", "killed", "survived", "invalid", "score"))
    tk = ts = 0
    for path in sorted({m.file for m in report}):
        ms = [m for m in report if m.file == path]
        k = sum(m.status == "killed" for m in ms)
        s = sum(m.status == "survived" for m in ms)
        inv = sum(m.status == "invalid" for m in ms)
        tk += k
        ts += s
        log("%-24s %7d %7d %8d %7d %5.1f%%" % (path, len(ms), k, s, inv, 100.0 * k / max(1, k + s)))
    log("%-24s %7d %7d %8d %7s %5.1f%%" % ("total", len(report), tk, ts, "", 100.0 * tk / max(1, tk + ts)))
    log("results: %s; %.0f s" % (results, time.time() - t_start))
    if args.update_killed:
        # Merged into the set, so a run over one file or a sample adds to it: this
        # run's killed mutants join, its survivors leave, mutants it did not run keep
        # their entry, and entries of a file this run read whose mutant no longer
        # exists (its line changed) are dropped.
        killed = load_killed(args.killed_file)
        exists = {(m.file, m.mid) for m in everything}
        for key in [k for k in killed if k[0] in by_file and k not in exists]:
            del killed[key]
        for m in report:
            if m.status == "killed":
                killed[(m.file, m.mid)] = [m.file, m.mid, m.kind, m.change()]
            elif m.status in ("survived", "invalid"):
                killed.pop((m.file, m.mid), None)
        os.makedirs(os.path.dirname(args.killed_file), exist_ok=True)
        with open(args.killed_file, "w") as f:
            f.write("# Mutants the runs of scripts/mutate.sh --update-killed killed: file, id, then\n"
                    "# the change as it was (the id survives line shifts). scripts/mutate.sh --ci fails\n"
                    "# when one of them survives (see docs/testing.md).\n")
            for row in killed.values():
                f.write("\t".join(row) + "\n")
        log("wrote %s (%d mutants)" % (args.killed_file, len(killed)))
    if args.ci:
        bad = [m for m in chosen if m.status == "survived"]
        for m in bad:
            log("REGRESSION: %s:%d %s (id %s) was killed by the last --update-killed run and survives" %
                (m.file, m.line, m.change(), m.mid))
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
