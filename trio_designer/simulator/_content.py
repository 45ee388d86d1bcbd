"""Deterministic answers: text, code, JSON instances of a schema, embeddings.

Pure functions, no trio, no I/O. Every answer is drawn from a ``random.Random`` seeded by a
blake2b hash of (model name, messages, requested schema, and the request's ``seed`` if it has
one), so the same request always gets the same answer, in any process, in any order.

What a chat request gets, first match wins:

1. ``response_format`` ``{"type": "json_schema", "json_schema": {"schema": S}}`` → a bare JSON
   instance of ``S``; ``{"type": "json_object"}`` → a bare JSON object (an instance of the
   prompt's ``<response_schema>`` if there is one, else a small generic object);
2. a JSON schema between ``<response_schema>`` and ``</response_schema>`` in the last user message
   → an instance of it in a fenced ```` ```json ```` block;
3. a fence opener such as ```` ```python ```` in the last user message → a short prose line and
   a plausible code block fenced with that language;
4. otherwise a few plausible sentences built from the prompt's words and a small vocabulary.

Judge requests need nothing special: their rubric scores are ``enum``s in the schema.

Schema support (:func:`schema_instance`): ``type`` (single or list), ``properties``,
``required``, ``additionalProperties``, ``minProperties``/``maxProperties``, ``enum``,
``const``, ``items`` (and draft-4 tuple ``items``), ``prefixItems``, ``minItems``/``maxItems``,
``uniqueItems``, ``minimum``/``maximum``/``exclusiveMinimum``/``exclusiveMaximum`` (draft 4
booleans too), ``multipleOf``, ``minLength``/``maxLength``, common ``format``s, ``anyOf``/
``oneOf`` (the first branch), ``allOf`` (merged), ``$ref`` to ``#``, ``#/$defs/...`` and
``#/definitions/...`` (pydantic style), nesting and recursion (bounded). Not supported: ``pattern``,
``not``, ``if``/``then``/``else``, ``contains``, ``dependentRequired``.

Token counting is the usual cheap approximation: ``ceil(len(text) / 4)``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import keyword
import math
import random
import re
import struct
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import attrs

from .._core._jsonenc import indented_text

AnswerKind = Literal["text", "code", "json", "fenced_json"]

_SCHEMA_TAG = re.compile(r"<response_schema>\s*(.*?)\s*</response_schema>", re.DOTALL)
"""What :func:`_schema_tag_text` and :func:`_without_schema_tags` find with ``str.find`` (the
same matches, without the regex's lazy scan; ``tests/test_simulator_content_fast.py``)."""
_OPEN_TAG, _CLOSE_TAG = "<response_schema>", "</response_schema>"
_FENCE_OPENER = re.compile(r"```([A-Za-z0-9_+-]+)")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]{3,}")
_LOWER_WORD = re.compile(r"[a-z][a-z'-]{3,}")


def _wordlist(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_STOPWORDS = frozenset(
    _wordlist(
        """about above after again against also among been before being below between both
        could does doing down during each from further have having here into itself just like
        more most must only other over same should some such than that their them then there
        these they this those through under until very what when where which while will with
        would your yours write give make please answer following return using json response
        schema brief short sentence sentences words tell explain describe list provide
        generate create summarize summary based given topic text output format"""
    )
)
_NOUNS = _wordlist(
    """system process outcome framework pattern context structure approach result balance
    signal method principle trade-off history practice question evidence detail model"""
)
_ADJECTIVES = _wordlist(
    """practical subtle historical measurable surprising central modern nuanced careful
    robust familiar distinctive"""
)
_VERBS = _wordlist("shapes influences reinforces complements explains reflects drives limits")
_VERBS_BASE = _wordlist("work evolve interact develop overlap")
_TEMPLATES = (
    "{A} is closely related to {b}, which {verb} the overall {noun}.",
    "In practice, {a} {verb} {b} more than most people expect.",
    "A useful way to think about {a} is as a {adj} form of {b}.",
    "Researchers often point out that {a} and {b} {verb_base} together.",
    "The {adj} side of {a} becomes clear when we look at {b}.",
    "Overall, {a} offers a {adj} perspective on {b}.",
    "{A} depends on {b} and, to a lesser degree, on {c}.",
    "One common misconception is that {a} has little to do with {b}.",
)


def count_tokens(text: str) -> int:
    """The simulator's token count of ``text``: ``ceil(len(text) / 4)``."""
    return -(-len(text) // 4)


def message_text(content: object) -> str:
    """The text of a message's ``content`` (a string, content parts, or null)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = (p.get("text", "") for p in content if isinstance(p, Mapping))
        return "\n".join(p for p in parts if isinstance(p, str))
    return ""


@attrs.frozen(kw_only=True)
class Answer:
    """One generated chat answer, before it is put into a response body.

    Attributes:
      content: the message content.
      reasoning: the ``reasoning_content``, or None when reasoning was not asked for.
      finish_reason: ``"stop"``; ``"length"`` when the answer reached ``max_tokens`` (or a
        fault cut it); ``"content_filter"`` for the content-filter fault.
      kind: what was generated (``"text"``, ``"code"``, ``"json"`` bare, ``"fenced_json"``).
    """

    content: str
    reasoning: str | None = None
    finish_reason: Literal["stop", "length", "content_filter"] = "stop"
    kind: AnswerKind = "text"

    @property
    def reasoning_tokens(self) -> int:
        return count_tokens(self.reasoning or "")

    @property
    def completion_tokens(self) -> int:
        return count_tokens(self.content) + self.reasoning_tokens


@attrs.frozen(kw_only=True)
class ChatRequest:
    """The parts of a chat request that decide its answer.

    Attributes:
      model: the model name.
      messages: the request's messages, as sent.
      response_format: the request's ``response_format``, or None.
      max_tokens: ``max_tokens`` / ``max_completion_tokens``, or None for no limit.
      reasoning: whether to add ``reasoning_content``.
      seed: the request's ``seed`` (OpenAI's sampling seed): same prompt, other seed, other
        answer — as a sampling server does.
    """

    model: str
    messages: Sequence[Mapping[str, Any]]
    response_format: Mapping[str, Any] | None = None
    max_tokens: int | None = None
    reasoning: bool = False
    seed: int | None = None

    @property
    def prompt_tokens(self) -> int:
        return sum(count_tokens(message_text(m.get("content"))) for m in self.messages)

    @property
    def last_user_text(self) -> str:
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return message_text(message.get("content"))
        return ""


def answer_chat(request: ChatRequest) -> Answer:
    """The deterministic answer to ``request`` (see the module docstring for the rules)."""
    prompt = request.last_user_text
    prompt_schema = _prompt_schema(prompt) if _OPEN_TAG in prompt else None
    rf_type = (request.response_format or {}).get("type")
    schema: object = None
    if rf_type == "json_schema":
        schema = _response_format_schema(request.response_format)
    elif rf_type == "json_object" or prompt_schema is not None:
        schema = prompt_schema
    rng = _request_rng(request, schema)
    words = prompt_words(_without_schema_tags(prompt)) or list(_NOUNS[:3])
    if rf_type in ("json_schema", "json_object"):
        answer = Answer(content=_dump_json(_json_value(schema, rng, words)), kind="json")
    elif prompt_schema is not None:
        fenced = f"```json\n{_dump_json(_json_value(schema, rng, words))}\n```"
        answer = Answer(content=fenced, kind="fenced_json")
    elif match := _FENCE_OPENER.search(prompt):
        answer = Answer(content=code_answer(match.group(1), rng, words), kind="code")
    else:
        answer = _text_answer(rng, words)
    if request.reasoning:
        answer = attrs.evolve(answer, reasoning=_reasoning(rng, words))
    return _fit_max_tokens(answer, request.max_tokens)


def _response_format_schema(response_format: Mapping[str, Any] | None) -> object:
    json_schema = (response_format or {}).get("json_schema")
    return json_schema.get("schema", {}) if isinstance(json_schema, Mapping) else {}


def _prompt_schema(prompt: str) -> object:
    """The schema between ``<response_schema>`` tags, or None (also when it is not JSON)."""
    text = _schema_tag_text(prompt)
    if text is None:
        return None
    try:
        schema: object = json.loads(text)
    except ValueError:
        return None
    return schema if isinstance(schema, Mapping | bool) else None


def _schema_tag_text(prompt: str) -> str | None:
    """``_SCHEMA_TAG.search(prompt).group(1)``, or None: the text between the first opening tag
    and the first closing tag after it, stripped (``\\s`` and ``str.strip`` agree on what
    whitespace is). No match at the first opening tag means no closing tag after it, so none
    after any later one either."""
    start = prompt.find(_OPEN_TAG)
    if start < 0:
        return None
    inner = start + len(_OPEN_TAG)
    end = prompt.find(_CLOSE_TAG, inner)
    return None if end < 0 else prompt[inner:end].strip()


def _without_schema_tags(prompt: str) -> str:
    """``_SCHEMA_TAG.sub(" ", prompt)``: every tagged span, tags included, replaced by a space
    (each from an opening tag to the first closing tag after it, left to right)."""
    start = prompt.find(_OPEN_TAG)
    if start < 0:
        return prompt
    pieces: list[str] = []
    done = 0
    while start >= 0:
        end = prompt.find(_CLOSE_TAG, start + len(_OPEN_TAG))
        if end < 0:
            break
        pieces += (prompt[done:start], " ")
        done = end + len(_CLOSE_TAG)
        start = prompt.find(_OPEN_TAG, done)
    pieces.append(prompt[done:])
    return "".join(pieces)


def _json_value(schema: object, rng: random.Random, words: Sequence[str]) -> Any:
    if schema is None:
        return _generic_object(rng, words)
    return schema_instance(schema, rng, words=words)


def _request_rng(request: ChatRequest, schema: object) -> random.Random:
    key = {"model": request.model, "messages": request.messages, "schema": schema}
    if request.seed is not None:
        key["seed"] = request.seed
    return seeded_rng(json.dumps(key, sort_keys=True, ensure_ascii=False, default=repr))


def seeded_rng(key: str) -> random.Random:
    """A ``random.Random`` seeded by a blake2b hash of ``key`` (stable across processes)."""
    digest = hashlib.blake2b(key.encode(), digest_size=16).digest()
    return random.Random(int.from_bytes(digest, "big"))


_dump_json = indented_text  # json.dumps(value, indent=2, ensure_ascii=False), faster


def _fit_max_tokens(answer: Answer, max_tokens: int | None) -> Answer:
    """The answer as a model limited to ``max_tokens`` completion tokens sends it.

    Reasoning and content share the limit, reasoning first (as OpenAI's
    ``max_completion_tokens`` does). An answer that *reaches* the limit — is at least
    ``max_tokens`` tokens long — is cut to exactly ``max_tokens`` tokens (``4 × n`` characters
    is ``n`` tokens) and says ``finish_reason="length"``: like a real model, the simulator does
    not know it would have stopped there anyway.
    """
    if max_tokens is None or answer.completion_tokens < max_tokens:
        return answer
    reasoning_tokens = answer.reasoning_tokens
    if answer.reasoning is not None and reasoning_tokens >= max_tokens:
        reasoning = answer.reasoning[: max_tokens * 4]
        return attrs.evolve(answer, content="", reasoning=reasoning, finish_reason="length")
    content = answer.content[: (max_tokens - reasoning_tokens) * 4]
    return attrs.evolve(answer, content=content, finish_reason="length")


# --------------------------------------------------------------------------- text


def prompt_words(prompt: str, limit: int = 40) -> list[str]:
    """Distinct lower-case content words of ``prompt`` (no stop words), in order of appearance.

    The words are ``_WORD``'s matches, lower-cased, stripped of ``'`` and ``-``. An ASCII
    prompt is lower-cased first and searched with the lower-case pattern (the same matches:
    lower-casing ASCII maps letters to letters); any other is searched as it is (a non-ASCII
    character may lower-case to an ASCII letter, e.g. the Kelvin sign). Each distinct match is
    cleaned once (a word's first occurrence decides its place either way).
    """
    found = _LOWER_WORD.findall(prompt.lower()) if prompt.isascii() else _WORD.findall(prompt)
    words: dict[str, None] = {}
    stop = _STOPWORDS
    for word in dict.fromkeys(found):
        lowered = word.lower().strip("'-")
        if len(lowered) >= 4 and lowered not in stop:
            words.setdefault(lowered, None)
    return list(words)[:limit]


def _choose(getrandbits: Callable[[int], int], seq: Sequence[str]) -> str:
    """``rng.choice(seq)`` for a non-empty ``seq``, given ``rng.getrandbits``: the same draw
    (CPython's ``Random.choice`` is ``seq[_randbelow(len(seq))]``, and ``_randbelow`` draws
    ``len(seq).bit_length()`` bits until the number is below ``len(seq)``), without its two
    Python-level calls. ``tests/test_simulator_content_fast.py`` checks it against
    ``Random.choice``, so a Python whose ``random`` draws otherwise fails there."""
    n = len(seq)
    k = n.bit_length()
    r = getrandbits(k)
    while r >= n:
        r = getrandbits(k)
    return seq[r]


def _pick_word(rng: random.Random, words: Sequence[str]) -> str:
    return rng.choice(words) if words and rng.random() < 0.7 else rng.choice(_NOUNS)


def sentence(rng: random.Random, words: Sequence[str]) -> str:
    """One plausible sentence mixing the prompt's words with the vocabulary (the draws of
    ``_pick_word`` three times, then ``rng.choice`` of the template, verb, base verb,
    adjective and noun, in that order)."""
    bits, draw = rng.getrandbits, rng.random
    a = _choose(bits, words) if words and draw() < 0.7 else _choose(bits, _NOUNS)
    b = _choose(bits, words) if words and draw() < 0.7 else _choose(bits, _NOUNS)
    c = _choose(bits, words) if words and draw() < 0.7 else _choose(bits, _NOUNS)
    template = _choose(bits, _TEMPLATES)
    return template.format(
        a=a,
        A=a[:1].upper() + a[1:],
        b=b,
        c=c,
        verb=_choose(bits, _VERBS),
        verb_base=_choose(bits, _VERBS_BASE),
        adj=_choose(bits, _ADJECTIVES),
        noun=_choose(bits, _NOUNS),
    )


def _text_answer(rng: random.Random, words: Sequence[str]) -> Answer:
    """Two to five sentences (``max_tokens`` cuts them afterwards, like any answer)."""
    sentences = [sentence(rng, words) for _ in range(rng.randint(2, 5))]
    return Answer(content=" ".join(sentences), kind="text")


def _reasoning(rng: random.Random, words: Sequence[str]) -> str:
    a, b = _pick_word(rng, words), _pick_word(rng, words)
    return f"Let me think about {a} first, then about {b}. {sentence(rng, words)}"


def _phrase(rng: random.Random, words: Sequence[str]) -> str:
    """Two to six distinct words, mostly from the prompt, capitalised."""
    pool = list(dict.fromkeys([*words, *rng.sample(_NOUNS, 4)]))
    chosen = rng.sample(pool, min(len(pool), rng.randint(2, 6)))
    text = " ".join(chosen)
    return text[:1].upper() + text[1:]


# --------------------------------------------------------------------------- code


def _identifier(word: str) -> str:
    name = re.sub(r"[^a-z0-9_]", "_", word.lower()).strip("_") or "value"
    return f"{name}_" if keyword.iskeyword(name) or name[0].isdigit() else name


_CODE: dict[str, str] = {
    "python": (
        "def {fn}({arg}: list[str]) -> dict[str, int]:\n"
        '    """Count how often each {noun} appears in {arg}."""\n'
        "    counts: dict[str, int] = {{}}\n"
        "    for item in {arg}:\n"
        "        counts[item] = counts.get(item, 0) + 1\n"
        "    return counts\n"
    ),
    "javascript": (
        "function {camel}({arg}) {{\n"
        "  // Count how often each {noun} appears.\n"
        "  const counts = new Map();\n"
        "  for (const item of {arg}) {{\n"
        "    counts.set(item, (counts.get(item) ?? 0) + 1);\n"
        "  }}\n"
        "  return counts;\n"
        "}}\n"
    ),
    "typescript": (
        "export function {camel}({arg}: string[]): Map<string, number> {{\n"
        "  const counts = new Map<string, number>();\n"
        "  for (const item of {arg}) {{\n"
        "    counts.set(item, (counts.get(item) ?? 0) + 1);\n"
        "  }}\n"
        "  return counts;\n"
        "}}\n"
    ),
    "sql": (
        "SELECT {word}, COUNT(*) AS total\n"
        "FROM {arg}\n"
        "GROUP BY {word}\n"
        "ORDER BY total DESC\n"
        "LIMIT 10;\n"
    ),
    "bash": (
        "#!/usr/bin/env bash\n"
        "set -euo pipefail\n"
        "# Count each {noun} in the input file.\n"
        'sort "${{1:-{arg}.txt}}" | uniq -c | sort -rn | head -n 10\n'
    ),
    "rust": (
        "use std::collections::HashMap;\n\n"
        "pub fn {fn}({arg}: &[&str]) -> HashMap<String, usize> {{\n"
        "    let mut counts = HashMap::new();\n"
        "    for item in {arg} {{\n"
        "        *counts.entry(item.to_string()).or_insert(0) += 1;\n"
        "    }}\n"
        "    counts\n"
        "}}\n"
    ),
    "go": (
        "func {Camel}({arg} []string) map[string]int {{\n"
        "\tcounts := make(map[string]int)\n"
        "\tfor _, item := range {arg} {{\n"
        "\t\tcounts[item]++\n"
        "\t}}\n"
        "\treturn counts\n"
        "}}\n"
    ),
    "java": (
        "public static Map<String, Integer> {camel}(List<String> {arg}) {{\n"
        "    Map<String, Integer> counts = new HashMap<>();\n"
        "    for (String item : {arg}) {{\n"
        "        counts.merge(item, 1, Integer::sum);\n"
        "    }}\n"
        "    return counts;\n"
        "}}\n"
    ),
    "json": '{{\n  "{word}": "{noun}",\n  "count": {number}\n}}\n',
    "generic": "# {fn}: count each {noun} in {arg}\n{fn} {arg}\n",
}
_CODE_ALIASES = {
    "py": "python",
    "python3": "python",
    "js": "javascript",
    "node": "javascript",
    "ts": "typescript",
    "sh": "bash",
    "shell": "bash",
    "zsh": "bash",
    "rs": "rust",
    "golang": "go",
    "postgresql": "sql",
    "sqlite": "sql",
}


def code_answer(language: str, rng: random.Random, words: Sequence[str]) -> str:
    """A prose line and a short, plausible code block fenced as ``language``."""
    template = _CODE.get(_CODE_ALIASES.get(language.lower(), language.lower()), _CODE["generic"])
    word = _identifier(_pick_word(rng, words))
    fn = f"{rng.choice(('count', 'tally', 'summarize', 'collect'))}_{word}"
    camel = re.sub(r"_(\w)", lambda m: m.group(1).upper(), fn)
    code = template.format(
        fn=fn,
        camel=camel,
        Camel=camel[:1].upper() + camel[1:],
        arg=rng.choice(("items", "records", "values", "entries", "rows")),
        word=word,
        noun=rng.choice(_NOUNS),
        number=rng.randint(1, 99),
    )
    return f"Here is a {rng.choice(_ADJECTIVES)} way to do it:\n\n```{language}\n{code}```"


# --------------------------------------------------------------------------- JSON


def _generic_object(rng: random.Random, words: Sequence[str]) -> dict[str, Any]:
    return {
        "answer": sentence(rng, words),
        "topic": _pick_word(rng, words),
        "confidence": round(rng.uniform(0.5, 1.0), 2),
        "points": [_phrase(rng, words) for _ in range(rng.randint(1, 3))],
    }


_SOFT_DEPTH = 8  # beyond this depth, only required properties and minItems are generated
_HARD_DEPTH = 64  # beyond this, give up (a schema with no finite instance)


def schema_instance(schema: object, rng: random.Random, *, words: Sequence[str] = ()) -> Any:
    """A JSON value that validates against ``schema`` (see the module docstring for support).

    Args:
      schema: a JSON schema (a mapping, or ``True``/``False``).
      rng: the source of every choice.
      words: words to build strings from (the prompt's words); the built-in vocabulary when
        empty.

    Returns:
      A JSON-compatible value. For unsupported keywords (``pattern``...) it may not validate.
    """
    root = schema if isinstance(schema, Mapping) else {}
    return _SchemaFaker(root, rng, list(words)).value(schema, 0)


@attrs.define
class _SchemaFaker:
    """Walks a schema and builds an instance. ``root`` anchors ``$ref`` lookups."""

    root: Mapping[str, Any]
    rng: random.Random
    words: list[str]

    def value(self, schema: object, depth: int) -> Any:
        if depth > _HARD_DEPTH or schema is False:
            return None
        if not isinstance(schema, Mapping):  # ``True`` or junk: anything validates
            return _phrase(self.rng, self.words)
        schema = self._resolve(schema, depth)
        if "const" in schema:
            return schema["const"]
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            return self.rng.choice(enum)
        for key in ("anyOf", "oneOf"):
            branches = schema.get(key)
            if isinstance(branches, list) and branches:
                rest = {k: val for k, val in schema.items() if k != key}
                first = branches[0] if isinstance(branches[0], Mapping) else {}
                return self.value({**rest, **first}, depth + 1)
        kind = _schema_type(schema)
        build = getattr(self, f"_{kind}", self._string)
        return build(schema, depth)

    def _resolve(self, schema: Mapping[str, Any], depth: int) -> Mapping[str, Any]:
        """Follow ``$ref`` and merge ``allOf`` until neither is left at the top."""
        for _ in range(_HARD_DEPTH - depth):
            if isinstance(schema.get("$ref"), str):
                target = self._lookup(schema["$ref"])
                siblings = {k: val for k, val in schema.items() if k != "$ref"}
                schema = {**siblings, **target}
            elif isinstance(schema.get("allOf"), list):
                schema = _merge_all_of(schema)
            else:
                break
        return schema

    def _lookup(self, ref: str) -> Mapping[str, Any]:
        node: object = self.root
        if not ref.startswith("#"):
            return {}
        for part in filter(None, ref[1:].split("/")):
            part = part.replace("~1", "/").replace("~0", "~")
            node = node.get(part) if isinstance(node, Mapping) else None
        return node if isinstance(node, Mapping) else {}

    def _object(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties") or {}
        required = [r for r in schema.get("required") or () if isinstance(r, str)]
        extra = schema.get("additionalProperties", True)
        minimal = depth > _SOFT_DEPTH
        out: dict[str, Any] = {}
        for name, sub in properties.items():
            if not minimal or name in required:
                out[name] = self.value(sub, depth + 1)
        for name in required:
            if name not in out:
                out[name] = self.value(extra if isinstance(extra, Mapping) else True, depth + 1)
        while extra is not False and len(out) < int(schema.get("minProperties", 0)):
            out[f"extra_{len(out)}"] = self.value(extra, depth + 1)
        maximum = schema.get("maxProperties")
        for name in [n for n in list(out) if n not in required]:
            if isinstance(maximum, int) and len(out) > maximum:
                del out[name]
        return out

    def _array(self, schema: Mapping[str, Any], depth: int) -> list[Any]:
        prefix, rest = _array_item_schemas(schema)
        count = self._array_length(schema, depth, len(prefix), rest is False)
        unique = bool(schema.get("uniqueItems"))
        out: list[Any] = []
        seen: set[str] = set()
        for _ in range(count * 10 if unique else count):
            if len(out) == count:
                break
            item = self.value(prefix[len(out)] if len(out) < len(prefix) else rest, depth + 1)
            key = json.dumps(item, sort_keys=True, default=repr)
            if not unique or key not in seen:
                seen.add(key)
                out.append(item)
        return out

    def _array_length(
        self, schema: Mapping[str, Any], depth: int, n_prefix: int, closed: bool
    ) -> int:
        low = int(schema.get("minItems", 0))
        high = schema.get("maxItems")
        high = int(high) if isinstance(high, int | float) else low + 3
        if closed:
            high = min(high, n_prefix)
        if depth > _SOFT_DEPTH:
            return low
        return self.rng.randint(low, max(low, min(high, max(low, 1) + 2)))

    def _string(self, schema: Mapping[str, Any], depth: int) -> str:
        low = int(schema.get("minLength", 0))
        high = schema.get("maxLength")
        text = _formatted(schema.get("format"), self.rng, self.words)
        text = text if text is not None else _phrase(self.rng, self.words)
        while len(text) < low:
            text = f"{text} {_pick_word(self.rng, self.words)}"
        return text[: int(high)] if isinstance(high, int | float) else text

    def _integer(self, schema: Mapping[str, Any], depth: int) -> int:
        low, high = _bounds(schema)
        low_i = math.floor(low[0]) + 1 if low[1] else math.ceil(low[0])
        high_i = math.ceil(high[0]) - 1 if high[1] else math.floor(high[0])
        step = schema.get("multipleOf")
        if isinstance(step, int | float) and step > 0 and float(step).is_integer():
            k = self.rng.randint(
                math.ceil(low_i / step), max(math.ceil(low_i / step), math.floor(high_i / step))
            )
            return int(k * step)
        return self.rng.randint(low_i, max(low_i, high_i))

    def _number(self, schema: Mapping[str, Any], depth: int) -> float | int:
        (low, low_strict), (high, high_strict) = _bounds(schema)

        def inside(value: float) -> bool:
            above = value > low or (not low_strict and value == low)
            below = value < high or (not high_strict and value == high)
            return above and below

        step = schema.get("multipleOf")
        if isinstance(step, int | float) and step > 0:
            return self._multiple_of(float(step), low, high, inside)
        value = round(self.rng.uniform(low, high), 2)
        return value if inside(value) else (low + high) / 2

    def _multiple_of(
        self, step: float, low: float, high: float, inside: Callable[[float], bool]
    ) -> float | int:
        """A multiple of ``step`` within the bounds that survives float division checks."""
        first, last = math.ceil(low / step), math.floor(high / step)
        candidates = [self.rng.randint(first, max(first, last)) for _ in range(8)]
        for k in [*candidates, *range(first, max(first, last) + 1)][:64]:
            value = k * step
            if inside(value) and (value / step).is_integer():
                return int(value) if value.is_integer() else value
        return 0

    def _boolean(self, schema: Mapping[str, Any], depth: int) -> bool:
        return self.rng.random() < 0.5

    def _null(self, schema: Mapping[str, Any], depth: int) -> None:
        return None


def _schema_type(schema: Mapping[str, Any]) -> str:
    """The type to build: the declared one (first non-null of a list), else inferred."""
    declared = schema.get("type")
    if isinstance(declared, list):
        concrete = [t for t in declared if t != "null"]
        declared = concrete[0] if concrete else "null"
    if isinstance(declared, str):
        return declared
    for keys, inferred in (
        (("properties", "required", "additionalProperties"), "object"),
        (("items", "prefixItems", "minItems", "maxItems"), "array"),
        (("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"), "number"),
    ):
        if any(k in schema for k in keys):
            return inferred
    return "string"


def _merge_all_of(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``allOf`` branches into one schema: properties united, required united."""
    merged: dict[str, Any] = {k: val for k, val in schema.items() if k != "allOf"}
    for branch in schema["allOf"]:
        if not isinstance(branch, Mapping):
            continue
        properties = {**merged.get("properties", {}), **branch.get("properties", {})}
        required = [*merged.get("required", ()), *branch.get("required", ())]
        merged.update(branch)
        if properties:
            merged["properties"] = properties
        if required:
            merged["required"] = list(dict.fromkeys(required))
    return merged


def _array_item_schemas(schema: Mapping[str, Any]) -> tuple[list[Any], Any]:
    """(positional item schemas, schema of the remaining items) for 2020-12 and draft 4."""
    items = schema.get("items", True)
    if isinstance(items, list):  # draft 4 tuple form
        return items, schema.get("additionalItems", True)
    prefix = schema.get("prefixItems")
    return (list(prefix) if isinstance(prefix, list) else []), items


def _bounds(schema: Mapping[str, Any]) -> tuple[tuple[float, bool], tuple[float, bool]]:
    """((low, strict), (high, strict)) from the bounds; an open side spans 100 from the other."""
    low = _bound(schema, "minimum", "exclusiveMinimum", max)
    high = _bound(schema, "maximum", "exclusiveMaximum", min)
    if low is None and high is None:
        return (0.0, False), (100.0, False)
    if low is None:
        assert high is not None
        return (high[0] - 100.0, False), high
    if high is None:
        return low, (low[0] + 100.0, False)
    return low, high


def _bound(
    schema: Mapping[str, Any], inclusive_key: str, exclusive_key: str, tighter: Any
) -> tuple[float, bool] | None:
    inclusive = schema.get(inclusive_key)
    exclusive = schema.get(exclusive_key)
    if isinstance(exclusive, bool):  # draft 4: a flag on the inclusive bound
        return None if inclusive is None else (float(inclusive), exclusive)
    candidates = []
    if isinstance(inclusive, int | float):
        candidates.append((float(inclusive), False))
    if isinstance(exclusive, int | float):
        candidates.append((float(exclusive), True))
    if not candidates:
        return None
    best: tuple[float, bool] = tighter(candidates, key=lambda c: (c[0], c[1] == (tighter is max)))
    return best


def _formatted(fmt: object, rng: random.Random, words: Sequence[str]) -> str | None:
    """A plausible string for a ``format``, or None for no or unknown formats.

    Every call makes the same draws in the same order, whatever the format (a schema's later
    values depend on it); only the requested string is built.
    """
    picked = _pick_word(rng, words)
    randint = rng.randint
    year, month, day = randint(2000, 2030), randint(1, 12), randint(1, 28)
    hour, minute, second = randint(0, 23), randint(0, 59), randint(0, 59)
    ipv4 = (randint(1, 254), randint(1, 254), randint(1, 254), randint(1, 254))
    bits = rng.getrandbits(128)
    if not isinstance(fmt, str) or fmt not in _FORMATS:
        return None
    clock = f"{hour:02d}:{minute:02d}:{second:02d}"
    if fmt == "date-time":
        return f"{year:04d}-{month:02d}-{day:02d}T{clock}Z"
    if fmt == "date":
        return f"{year:04d}-{month:02d}-{day:02d}"
    if fmt == "time":
        return f"{clock}Z"
    if fmt == "ipv4":
        return ".".join(map(str, ipv4))
    if fmt == "uuid":
        return str(uuid.UUID(int=bits, version=4))
    word = _identifier(picked).replace("_", "-")
    return _FORMATS[fmt].format(word)


_FORMATS = {
    "date-time": "",
    "date": "",
    "time": "",
    "email": "{}@example.com",
    "uri": "https://example.com/{}",
    "url": "https://example.com/{}",
    "hostname": "{}.example.com",
    "ipv4": "",
    "uuid": "",
}


# --------------------------------------------------------------------------- faults


def apply_content_fault(answer: Answer, fault: str) -> Answer:
    """The answer as damaged by content fault ``fault`` (``empty``, ``malformed``,
    ``truncated``, ``content_filter``; any other fault leaves it as it is)."""
    if fault == "empty":
        return attrs.evolve(answer, content="")
    if fault == "content_filter":
        return attrs.evolve(
            answer,
            content=answer.content[: len(answer.content) // 4],
            finish_reason="content_filter",
        )
    if fault == "truncated":
        return attrs.evolve(
            answer, content=answer.content[: len(answer.content) // 2], finish_reason="length"
        )
    if fault == "malformed":
        return attrs.evolve(answer, content=_malformed(answer))
    return answer


def _malformed(answer: Answer) -> str:
    """Content that no JSON parser accepts, shaped like the answer it replaces."""
    if answer.kind == "json":
        return _break_json(answer.content)
    if answer.kind == "fenced_json":
        inner = answer.content.removeprefix("```json\n").removesuffix("\n```")
        return f"```json\n{_break_json(inner)}\n```"
    return '{"text": "' + answer.content[:40]


def _break_json(text: str) -> str:
    """Drop the first key's colon (``{"a" 1}``), or end a scalar with a stray comma."""
    if '": ' in text:
        return text.replace('": ', '" ', 1)
    return text[:-1] + "," if len(text) > 1 else ","


# --------------------------------------------------------------------------- embeddings


def embedding(model: str, text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector of length ``dimensions`` for ``text``."""
    rng = seeded_rng(json.dumps(["embedding", model, text, dimensions]))
    vector = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


def encode_base64(vector: Sequence[float]) -> str:
    """OpenAI's ``encoding_format="base64"``: little-endian float32s, base64-encoded."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
