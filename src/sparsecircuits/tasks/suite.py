"""The 20 built-in Python tasks of docs/tasks.md, as random generators of pairs.

Every generator draws all its randomness once and builds both prompts from it, so the
two prompts differ only where the task needs them to. Each returns the prompts and the
full completions (answer token + the rest of the program); every completed program
parses (rule 4, checked at generation time). Identifiers come from a pool filtered to
names that are single tokens (with a leading space) under the tokenizer in use, so
answers that are names (var_swap, var_if, final_kwarg) are whole names.

Templates follow the tokenizer's pre-tokenizer: an identifier may carry one leading
punctuation character (`(self`, `.read`), punctuation runs merge (`):`, `}"`), and
newlines and indentation are tokens of their own. Prompts therefore end where the
next token starts a fresh pre-token, and the answer is whatever first token the
completed code really has there (e.g. `):` rather than `)` when a colon follows).
"""

from __future__ import annotations

import keyword
import random
from collections.abc import Callable
from typing import Any

from tokenizers import Tokenizer

from sparsecircuits.data.tokenizer import encode
from sparsecircuits.errors import InputError
from sparsecircuits.tasks.base import GeneratorTask, Pair, add_task


def _words(text: str) -> tuple[str, ...]:
    """The whitespace-separated words of `text` (keeps the word lists below readable)."""
    return tuple(text.split())


# Candidate identifiers; each task uses those that are one token after a space.
NAME_CANDIDATES = _words(
    "name value key data item result path line text size node obj args start end index "
    "count total buf msg base mode flag pos tag code info level source target parent child "
    "prefix suffix first last left right old new src dst out err res val tmp cls func fn "
    "module names values items keys lines parts attrs options config context state stream "
    "file filename root url host port timeout limit offset length width height depth number "
    "found done status event handler callback encoding errors default header headers body "
    "content chunk block token tokens pattern results output frame stack queue lock conn sock "
    "task future parser reader writer entry record row col field kind label title word words "
    "char pair step delta score weight rate x y z i j k n m a b c d e f g h p q r s t u v w "
    "elem part piece seq arr lst dct req resp user group owner table query params spec opts "
    "cache store proc cmd env sep delim fmt"
)
CLASS_NAMES = _words(
    "Parser Handler Reader Writer Builder Config Manager Client Server Node Worker Cache "
    "Store Queue Loader Runner Model View Record Item Entry Table Field Tree Graph Stream "
    "Buffer Context Session Request Response Message Event Task Job Pool Registry Factory"
)
FUNC_NAMES = _words(
    "get load parse build run make check update process handle read write compute render "
    "format convert apply merge split collect find fetch send emit reset close start stop "
    "prepare setup validate normalize encode decode transform resolve lookup register "
    "dispatch flush scan walk visit evaluate select filter_items main helper wrapper"
)
WORDS = _words(
    "hello world some words error value not found missing file path name invalid input "
    "done ready starting stopped failed ok warning unknown option expected got line item "
    "total count the a of to in for with from data result empty list key bad type"
)
MIN_NAMES = 24
RESERVED = {"self", "print", "str", "len", "set", "range", "enumerate", "open", "lambda", "x"}


def single_token_names(tokenizer: Tokenizer) -> list[str]:
    """Names from NAME_CANDIDATES that encode as one token after a space (` name`)."""
    names = [
        w
        for w in NAME_CANDIDATES
        if w not in RESERVED
        and not keyword.iskeyword(w)
        and not keyword.issoftkeyword(w)
        and len(encode(tokenizer, " " + w)) == 1
    ]
    if len(names) < MIN_NAMES:
        example = next(w for w in NAME_CANDIDATES if w not in names and w not in RESERVED)
        raise InputError(
            f"only {len(names)} of {len(NAME_CANDIDATES)} common identifiers are single tokens "
            f"under this tokenizer (need {MIN_NAMES}; e.g. {' ' + example!r} is "
            f"{len(encode(tokenizer, ' ' + example))} tokens); use a tokenizer trained on Python code"
        )
    return names


# Helpers: every helper draws from `rng` in a fixed order, so a pair is a function of the seed.


def _num(rng: random.Random) -> str:
    return str(rng.randint(0, 99))


def _preamble(rng: random.Random, pool: list[str]) -> str:
    """Zero to two harmless top-level lines before the task's code."""
    choices = [
        "import os\n",
        "import sys\n",
        "from typing import Any\n",
        f"{rng.choice(pool)} = {_num(rng)}\n",
        f"{rng.choice(pool).upper()} = {_num(rng)}\n",
        "\n",
    ]
    return "".join(rng.sample(choices, rng.randint(0, 2)))


def _scope(rng: random.Random, arg: str) -> tuple[str, str]:
    """A random enclosing function or method taking `arg`, and its body's indentation."""
    fn = rng.choice(FUNC_NAMES)
    if rng.random() < 0.5:
        return f"def {fn}({arg}):\n", "    "
    return f"class {rng.choice(CLASS_NAMES)}:\n    def {fn}(self, {arg}):\n", "        "


def _filler(rng: random.Random, pool: list[str], ind: str, avoid: set[str]) -> str:
    """Zero to two simple statements at indentation `ind`, not assigning names in `avoid`."""
    free = [w for w in pool if w not in avoid]
    out = []
    for _ in range(rng.randint(0, 2)):
        a, b = rng.sample(free, 2)
        out.append(
            rng.choice(
                [
                    f"{ind}{a} = {b} + {_num(rng)}\n",
                    f"{ind}{a} = {rng.choice(FUNC_NAMES)}({b})\n",
                    f"{ind}print({a})\n",
                    f"{ind}{a} = []\n",
                    f"{ind}assert {a} is not None\n",
                    f"{ind}if not {a}:\n{ind}    {b} = None\n",
                ]
            )
        )
    return "".join(out)


# The 20 generators: each returns Pair(prompt_a, completion_a, prompt_b, completion_b).


def single_double_quote(rng: random.Random, pool: list[str]) -> Pair:
    var, arg = rng.sample(pool, 2)
    pre = _preamble(rng, pool)
    header, ind = _scope(rng, arg) if rng.random() < 0.6 else ("", "")
    body = pre + header + _filler(rng, pool, ind, {var})
    words = " ".join(rng.sample(WORDS, rng.randint(1, 4)))
    lead = rng.choice([f"{var} = ", "print(", f"{var}.append(", f"{rng.choice(FUNC_NAMES)}("])
    close = "" if lead.endswith("= ") else ")"
    end = f"\n{ind}print({var})\n"
    return Pair(
        f'{body}{ind}{lead}"{words}', f'"{close}{end}',
        f"{body}{ind}{lead}'{words}", f"'{close}{end}",
    )


def bracket_context(tokenizer: Tokenizer) -> tuple[list[str], bool]:
    """bracket_counting's context: the name pool, and whether `]]` is one token of the
    tokenizer (as under one trained on the installed packages) or two (the stdlib's)."""
    ids = encode(tokenizer, "x = [[1], [2]]\n")
    return single_token_names(tokenizer), "]]" in (tokenizer.id_to_token(i) for i in ids)


def bracket_counting(rng: random.Random, context: tuple[list[str], bool]) -> Pair:
    """With a `]]` token, the form of docs/tasks.md: `[[1, 2], [3, 4` -> `]]` vs `[1, 2, 3, 4` ->
    `]`. Without one, the prompt also holds the inner `]` (else both answers would be `]`)."""
    pool, double_token = context
    var, arg = rng.sample(pool, 2)
    header, ind = _scope(rng, arg) if rng.random() < 0.5 else ("", "")
    body = _preamble(rng, pool) + header + _filler(rng, pool, ind, {var})
    inner = [[_num(rng) for _ in range(rng.randint(1, 3))] for _ in range(rng.randint(2, 4))]
    if double_token and len(inner[-1]) == 1:  # both prompts must end in ` N`, not `[N`
        inner[-1].append(_num(rng))
    nested = ", ".join("[" + ", ".join(xs) + "]" for xs in inner)
    flat = ", ".join(x for xs in inner for x in xs)
    end = f"\n{ind}print({var})\n"
    if double_token:
        return Pair(f"{body}{ind}{var} = [{nested[:-1]}", f"]]{end}", f"{body}{ind}{var} = [{flat}", f"]{end}")
    return Pair(f"{body}{ind}{var} = [{nested}", f"]{end}", f"{body}{ind}{var} = [{flat}]", end)


def _set_or_string(rng: random.Random, pool: list[str], var: str | None) -> Pair:
    arg, item, other = rng.sample([w for w in pool if w != var], 3)
    var = var or other
    header, ind = _scope(rng, arg)
    empty = rng.choice(['""', "''", "str()"])
    loop = f"{ind}for {item} in {arg}:\n" + _filler(rng, pool, ind + "    ", {var, item, arg})
    if rng.random() < 0.5:
        loop = f"{ind}{item} = None\n" + loop
    body = _preamble(rng, pool) + header
    end = f"\n{ind}return {var}\n"
    return Pair(
        f"{body}{ind}{var} = set()\n{loop}{ind}    {var}", f".add({item}){end}",
        f"{body}{ind}{var} = {empty}\n{loop}{ind}    {var}", f" += str({item}){end}",
    )


def set_or_string(rng: random.Random, pool: list[str]) -> Pair:
    return _set_or_string(rng, pool, None)


def set_or_string_fixedvarname(rng: random.Random, pool: list[str]) -> Pair:
    return _set_or_string(rng, pool, "x")


def while_return_true(rng: random.Random, pool: list[str]) -> Pair:
    arg = rng.choice(pool)
    header, ind = _scope(rng, arg)
    body = _preamble(rng, pool) + header + _filler(rng, pool, ind, {arg})
    return Pair(
        f"{body}{ind}while True", f":\n{ind}    {arg} = {rng.choice(FUNC_NAMES)}({arg})\n",
        f"{body}{ind}return True", "\n",
    )


def _condition(rng: random.Random, a: str, b: str) -> str:
    """A condition ending in a name, a number or a constant (never in punctuation)."""
    return rng.choice(
        [f"{a} > {_num(rng)}", f"{a} is None", f"not {a}", f"{a} in {b}", f"{a} == {_num(rng)}",
         f"{a} is not None", f"{a} and {b}"]
    )


def if_ternary(rng: random.Random, pool: list[str]) -> Pair:
    a, b, y, v1, v2 = rng.sample(pool, 5)
    header, ind = _scope(rng, a)
    body = _preamble(rng, pool) + header + _filler(rng, pool, ind, {a, b, y})
    cond = _condition(rng, a, b)
    return Pair(
        f"{body}{ind}if {cond}", f":\n{ind}    {y} = {v1}\n",
        f"{body}{ind}{y} = {v1} if {cond}", f" else {v2}\n",
    )


def if_equals(rng: random.Random, pool: list[str]) -> Pair:
    arg, attr, r = rng.sample(pool, 3)
    header, ind = _scope(rng, arg)
    obj = "self" if header.startswith("class") and rng.random() < 0.7 else arg
    value = rng.choice([_num(rng), r, "None", '""'])
    body = _preamble(rng, pool) + header + _filler(rng, pool, ind, {arg})
    return Pair(
        f"{body}{ind}if {obj}.{attr}", f" == {value}:\n{ind}    return {r}\n",
        f"{body}{ind}{obj}.{attr}", f" = {value}\n",
    )


def bracket_brace(rng: random.Random, pool: list[str]) -> Pair:
    var, arg, *elems = rng.sample(pool, 2 + rng.randint(2, 5))
    if rng.random() < 0.3:
        elems = [_num(rng) for _ in elems]
    header, ind = _scope(rng, arg) if rng.random() < 0.6 else ("", "")
    body = _preamble(rng, pool) + header + _filler(rng, pool, ind, {var})
    items = ", ".join(elems)
    end = f"\n{ind}print({var})\n"
    return Pair(f"{body}{ind}{var} = [{items}", f"]{end}", f"{body}{ind}{var} = {{{items}", f"}}{end}")


def fstring_brace(rng: random.Random, pool: list[str]) -> Pair:
    var, a, b, attr = rng.sample(pool, 4)
    header, ind = _scope(rng, a) if rng.random() < 0.6 else ("", "")
    body = _preamble(rng, pool) + header + _filler(rng, pool, ind, {var, a, b})
    expr = rng.choice([f"{a} + {b}", f"{a} * {_num(rng)}", f"{a}.{attr}", f"{a} - {b}"])
    text = " ".join(rng.sample(WORDS, rng.randint(0, 3)))
    text = text + rng.choice([" ", ": ", " = "]) if text else ""
    q = rng.choice(['"', "'"])
    end = f"\n{ind}print({var})\n"
    return Pair(
        f"{body}{ind}{var} = f{q}{text}{{{expr}", f"}}{q}{end}",
        f"{body}{ind}{var} = str({expr}", f"){end}",
    )


def var_swap(rng: random.Random, pool: list[str]) -> Pair:
    a, b, arg = rng.sample(pool, 3)
    header, ind = _scope(rng, arg)
    body = (
        _preamble(rng, pool) + header
        + f"{ind}{a} = {rng.choice([arg, _num(rng)])}\n{ind}{b} = {rng.choice([arg, _num(rng)])}\n"
        + _filler(rng, pool, ind, {a, b, arg})
    )
    end = f"\n{ind}return {a}, {b}\n"
    return Pair(f"{body}{ind}{a}, {b} = {b},", f" {a}{end}", f"{body}{ind}{b}, {a} = {a},", f" {b}{end}")


def var_if(rng: random.Random, pool: list[str]) -> Pair:
    n1, n2, arg = rng.sample(pool, 3)
    header, ind = _scope(rng, arg)
    f1, f2 = rng.sample(FUNC_NAMES, 2)
    lines = [f"{ind}{n1} = {f1}({arg})\n", f"{ind}{n2} = {f2}({arg})\n"]
    rng.shuffle(lines)
    body = _preamble(rng, pool) + header + "".join(lines) + _filler(rng, pool, ind, {n1, n2, arg})
    inner = rng.choice(["", f"{ind}    print({arg})\n", f"{ind}    {arg} = None\n"])
    end = f"\n{ind}return None\n"
    return Pair(
        f"{body}{ind}if {n1}:\n{inner}{ind}    return", f" {n1}{end}",
        f"{body}{ind}if {n2}:\n{inner}{ind}    return", f" {n2}{end}",
    )


def indent_for(rng: random.Random, pool: list[str]) -> Pair:
    x, arg = rng.sample(pool, 2)
    fn = rng.choice(FUNC_NAMES)
    pre = _preamble(rng, pool)
    state = rng.getstate()
    fill_a = _filler(rng, pool, "    ", {x, arg})
    rng.setstate(state)
    fill_b = _filler(rng, pool, "", {x, arg})
    it = rng.choice([arg, f"range({arg})", f"{arg}.items()", f"sorted({arg})"])
    stmt = rng.choice([f"print({x})", f"{arg} = {x}", "pass", f"{rng.choice(FUNC_NAMES)}({x})"])
    return Pair(
        f"{pre}def {fn}({arg}):\n{fill_a}    for {x} in {it}:\n", f"        {stmt}\n",
        f"{pre}{fill_b}for {x} in {it}:\n", f"    {stmt}\n",
    )


def enumerate_range(rng: random.Random, pool: list[str]) -> Pair:
    i, item, items = rng.sample(pool, 3)
    header, ind = _scope(rng, items)
    body = _preamble(rng, pool) + header + _filler(rng, pool, ind, {i, item, items})
    return Pair(
        f"{body}{ind}for {i}, {item} in", f" enumerate({items}):\n{ind}    print({i}, {item})\n",
        f"{body}{ind}for {i} in", f" range(len({items})):\n{ind}    print({items}[{i}])\n",
    )


def lambda_func(rng: random.Random, pool: list[str]) -> Pair:
    f, *params = rng.sample(pool, 1 + rng.randint(2, 3))
    header, ind = _scope(rng, rng.choice(pool)) if rng.random() < 0.5 else ("", "")
    body = _preamble(rng, pool) + header + _filler(rng, pool, ind, {f})
    plist = ", ".join(params)
    expr = rng.choice([" + ", " * ", " or "]).join(params)
    return Pair(
        f"{body}{ind}{f} = lambda {plist}", f": {expr}\n",
        f"{body}{ind}def {f}({plist}", f"):\n{ind}    return {expr}\n",
    )


def final_kwarg(rng: random.Random, pool: list[str]) -> Pair:
    p, k1, k2, r = rng.sample(pool, 4)
    fn = rng.choice(FUNC_NAMES)
    default = rng.choice(["None", "False", "0", '""'])

    def sig(k: str) -> str:
        return f"def {fn}({p}, *, {k}={default}):\n    return {p}, {k}\n"

    mid = _preamble(rng, pool) + _filler(rng, pool, "", {fn, p, k1, k2, r})
    value = rng.choice([_num(rng), p, "True"])
    call = f"{r} = {fn}({rng.choice([_num(rng), p])},"
    return Pair(f"{sig(k1)}{mid}{call}", f" {k1}={value})\n", f"{sig(k2)}{mid}{call}", f" {k2}={value})\n")


def class_init(rng: random.Random, pool: list[str]) -> Pair:
    method = rng.choice(FUNC_NAMES)
    attr, other = rng.sample(pool, 2)
    pre = _preamble(rng, pool)
    n = _num(rng)
    before = rng.choice(["attr", "method", ""])
    cls = f"class {rng.choice(CLASS_NAMES)}:\n"
    if before == "attr":
        a_body, b_body = f"{cls}    {attr} = {n}\n", f"{attr} = {n}\n"
    elif before == "method":
        a_body = f"{cls}    def {other}(self):\n        return {n}\n\n"
        b_body = f"def {other}():\n    return {n}\n\n"
    else:
        a_body, b_body = cls, ""
    return Pair(
        f"{pre}{a_body}    def {method}", f"(self):\n        return {attr}\n",
        f"{pre}{b_body}def {method}", f"():\n    return {attr}\n",
    )


WITH_AS_MANAGERS = ("open", "gzip.open", "bz2.open", "lzma.open", "tarfile.open",
                    "zipfile.ZipFile", "shelve.open", "os.scandir", "io.open", "dbm.open")
WITH_PLAIN_MANAGERS = ("chdir", "contextlib.chdir", "suppress", "contextlib.suppress",
                       "redirect_stdout", "redirect_stderr", "contextlib.redirect_stdout",
                       "self.locked", "patch", "mock.patch")


def with_as(rng: random.Random, pool: list[str]) -> Pair:
    arg, fh = rng.sample(pool, 2)
    header, ind = _scope(rng, arg)
    body = _preamble(rng, pool) + header + _filler(rng, pool, ind, {arg, fh})
    ma, mb = rng.choice(WITH_AS_MANAGERS), rng.choice(WITH_PLAIN_MANAGERS)
    return Pair(
        f"{body}{ind}with {ma}({arg}", f") as {fh}:\n{ind}    print({fh})\n",
        f"{body}{ind}with {mb}({arg}", f"):\n{ind}    print({arg})\n",
    )


def with_open(rng: random.Random, pool: list[str]) -> Pair:
    path, fh, data, var = rng.sample(pool, 4)
    header, ind = _scope(rng, path)
    body = _preamble(rng, pool) + header + _filler(rng, pool, ind, {path, fh, data, var})
    q = rng.choice(['"', "'"])
    extra = rng.choice(["", f", encoding={q}utf-8{q}"])
    ma, mb = rng.choice(["r", "rb", "rt"]), rng.choice(["w", "wb", "a", "wt", "ab"])
    inner = _filler(rng, pool, ind + "    ", {path, fh, data, var})
    lead = rng.choice(["", f"{var} = "])

    def prompt(mode: str) -> str:
        return f"{body}{ind}with open({path}, {q}{mode}{q}{extra}) as {fh}:\n{inner}{ind}    {lead}{fh}"

    return Pair(prompt(ma), ".read()\n", prompt(mb), f".write({data})\n")


def for_while(rng: random.Random, pool: list[str]) -> Pair:
    d, items = rng.sample(pool, 2)
    header, ind = _scope(rng, items)
    body = _preamble(rng, pool) + header + _filler(rng, pool, ind, {d, items})
    return Pair(
        f"{body}{ind}while not {d}", f":\n{ind}    {d} = {rng.choice(FUNC_NAMES)}({items})\n",
        f"{body}{ind}for {d}", f" in {items}:\n{ind}    print({d})\n",
    )


def else_elif(rng: random.Random, pool: list[str]) -> Pair:
    x, r1, r2, r3 = rng.sample(pool, 4)
    header, ind = _scope(rng, x)
    body = _preamble(rng, pool) + header + _filler(rng, pool, ind, {x})
    n, m, k = (str(v) for v in rng.sample(range(100), 3))
    hi, lo = rng.choice([(">", "<"), (">=", "<"), ("<", ">"), ("<=", ">")])

    def chain(c1: str, c2: str) -> str:
        return f"{body}{ind}if {x} {c1}:\n{ind}    return {r1}\n{ind}elif {x} {c2}:\n{ind}    return {r2}\n{ind}"

    return Pair(
        chain(f"{hi} {n}", f"{lo} {n}"), f"else:\n{ind}    return {r3}\n",
        chain(f"== {n}", f"== {m}"), f"elif {x} == {k}:\n{ind}    return {r3}\n",
    )


Generator = Callable[[random.Random, Any], Pair]

# name -> (generator, same_length, description documenting the template)
SUITE: dict[str, tuple[Generator, bool, str]] = {
    "single_double_quote": (single_double_quote, False,
        "`x = \"some words` -> `\"` vs `x = 'some words` -> `'`: close the string with its opening quote."),
    "bracket_counting": (bracket_counting, False,
        "`x = [[1, 2], [3, 4]` -> `]` vs `x = [1, 2, 3, 4]` -> newline: is a bracket still open after `]`; "
        "under a tokenizer with a `]]` token, `x = [[1, 2], [3, 4` -> `]]` vs `x = [1, 2, 3, 4` -> `]`."),
    "set_or_string": (set_or_string, False,
        "`s = set()` ... loop ... `s` -> `.` (`.add`) vs `s = \"\"` ... `s` -> ` +=`: the initial type, lines back."),
    "set_or_string_fixedvarname": (set_or_string_fixedvarname, False,
        "as set_or_string with the variable always `x`."),
    "while_return_true": (while_return_true, False,
        "`    while True` -> `:` vs `    return True` -> newline: the keyword before `True`."),
    "if_ternary": (if_ternary, False,
        "`    if COND` -> `:` vs `    y = a if COND` -> ` else`: statement vs expression."),
    "if_equals": (if_equals, False,
        "`    if obj.attr` -> ` ==` vs `    obj.attr` -> ` =`: inside an `if` or not."),
    "bracket_brace": (bracket_brace, False,
        "`x = [a, b, c` -> `]` vs `x = {a, b, c` -> `}`: the opening bracket."),
    "fstring_brace": (fstring_brace, False,
        "`msg = f\"text {a + b` -> `}` (or `}\"`) vs `msg = str(a + b` -> `)`: f-string field vs call."),
    "var_swap": (var_swap, False,
        "`a, b = b,` -> ` a` vs `b, a = a,` -> ` b`: the left-hand side order."),
    "var_if": (var_if, True,
        "`foo = ...`, `bar = ...`, `if foo:` ... `return` -> ` foo` vs `if bar:` -> ` bar`: which name was tested."),
    "indent_for": (indent_for, False,
        "`def f():` ... `    for x in xs:` newline -> 8 spaces vs top-level `for x in xs:` newline -> 4 spaces."),
    "enumerate_range": (enumerate_range, False,
        "`for i, item in` -> ` enumerate` vs `for i in` -> ` range` (first token of each): one or two loop names."),
    "lambda_func": (lambda_func, False,
        "`f = lambda a, b` -> `:` vs `def f(a, b` -> `):`: lambda vs def (two or three parameters)."),
    "final_kwarg": (final_kwarg, True,
        "`def make(a, *, flag=None)` ... `make(1,` -> ` flag` vs the same with `mode` -> ` mode`: the keyword in the signature."),
    "class_init": (class_init, False,
        "`class A:` / `    def run` -> `(self` vs top-level `def run` -> `():`: inside a class or not."),
    "with_as": (with_as, False,
        "`with open(path` -> `)` (then ` as f:`) vs `with suppress(path` -> `):`: does the manager's value get bound."),
    "with_open": (with_open, False,
        "`with open(p, \"r\") as f:` ... `f` -> `.read` vs the same with `\"w\"` -> `.write`: the file mode."),
    "for_while": (for_while, False,
        "`while not done` -> `:` vs `for done` -> ` in`: the loop keyword."),
    "else_elif": (else_elif, False,
        "`if x > n:` ... `elif x < n:` ... -> `else` vs `if x == n:` ... `elif x == m:` ... -> `elif`: "
        "a chain with one case left ends in `else`, a dispatch on values continues."),
}


# The context a generator draws from, when it is more than the name pool.
CONTEXTS: dict[str, Callable[[Tokenizer], Any]] = {"bracket_counting": bracket_context}


def _builtin(name: str, gen: Generator, same_length: bool, description: str) -> GeneratorTask:
    return GeneratorTask(
        name=name,
        description=description,
        source="builtin",
        params={"same_length": same_length, "parse": True},
        draw=gen,
        prepare=CONTEXTS.get(name, single_token_names),
        same_length=same_length,
        parse=True,
    )


def register_builtins() -> None:
    """Add the 20 tasks to the registry (called once on import of sparsecircuits.tasks)."""
    for name, (gen, same_length, description) in SUITE.items():
        add_task(_builtin(name, gen, same_length, description), builtin=True)
