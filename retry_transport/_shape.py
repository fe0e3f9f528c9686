"""A 400 that no rule knows, judged by its shape.

The evidence (tests/data/*.jsonl, and issue 12's held-out set): the 400s that later succeeded
unchanged say nothing about the request. They are empty, generic ("Bad Request", "Provider
returned error", "Invalid request sent to provider", "Upstream request failed"), HTML from a
proxy, or a relay's boilerplate around an upstream failure (NIM's DEGRADED 400 behind
free-claude-code, OpenRouter's opaque metadata.raw). The 400s that failed again are the
opposite: a structured error that names what is wrong with the request, a parameter (a
non-empty ``param`` field), a value ("got -160"), a constraint ("must be at least 1", "at most
1 image per prompt", "is a reserved keyword") or a feature ("is not supported", "not
available", "unknown field"). So an unknown 400 that names a cause is ``FATAL``; any other keeps
``UNRECOGNISED`` (the capped retry, ``unclassified_400_attempts``). A body that also names a
transient cause ("temporarily", "try again", "overloaded", "timeout", "connection reset") is
never made fatal here.

The held-out batches collected later (``held-out-2`` to ``held-out-5``) widened what "names a
cause" means without a phrase per provider: any "must …" or "should …" constraint (Perplexity's
"user or tool message(s) should alternate", serac-labs/serac#53), "do not currently support"
(groq/groq-python#27), "are not valid" (RooCodeInc/Roo-Code#770), a number comparison
("64000 > 32000"), "longer than", and the Chinese parameter errors 参数非法 / 参数有误 / 不支持.
"should not happen" is no constraint; "Please ensure that function call turn comes
immediately after a user turn" (google-gemini/gemini-cli#26486) and 请检查文档 are instructions
to fix the request. Four parallel batches (``held-out-11`` to ``-14``) showed the
structural markers of a specific refusal that no verb list catches: a location inside the
request (``messages[3]``, ``messages.1.content``, Workers AI's JSON pointer
``'/messages/*/content'``, opencodeschool/opencode.school#174), a server flag the request
needs (vLLM '"auto" tool choice requires --enable-auto-tool-choice', vllm-project/vllm#9986),
"requires", "mismatch", "bad input", "not met", something "missing" or "empty", "not enough",
and the Chinese for a format or parse error (Zhipu 图片输入格式/解析错误,
fruitbars/simple-one-api#30), too long (超长), empty (为空) and out of range. Three misses of
held-out-16 to -18 shared one more shape: a negative said of a thing the request or its setup
names ("Could not discover a valid Google Cloud Project ID", "the provider rejected the
gateway's credentials", "The provided model identifier is invalid"); such a negative (rejected,
refused, denied, could not find/discover/resolve/parse/validate, not set, not valid, unknown)
beside such a thing (project, credential, key, token, model, config, account, region, endpoint,
url, path, parameter, field, schema, format, version, image, file) names a cause too; no
retryable body in the corpus reaches the shape rule with one. Two settings that exclude each
other name a cause the same way ("not compatible with", "only one of … can be set", "cannot
both be specified", "mutually exclusive", Zhipu 1215's "cannot be set simultaneously", Cohere's
"cannot specify both message and tool_results", cohere-ai/cohere-python#525), and so does an
enumeration constraint (Bailian's "developer is not one of ['system', 'assistant', …]",
proma-ai/Proma#1244; "must be one of") and an instruction to use something else ("Please use a
different model"). A fault of the
model's own output ("model output must contain either output text or tool calls", "Unable to
parse the model output as JSON", OpenAI's "The model produced invalid content") is no cause of
the request either: another draw may succeed (METR/vivaria#875 retries it), so the shape rule
never makes it fatal and the ``model-output-fault`` rule gives it one retry. The patterns are
searched in the lower-cased text.
"""

from __future__ import annotations

import re

from ._verdict import Classification, Verdict

__all__ = [
    "GENERIC",
    "MODEL_OUTPUT",
    "SPECIFIC",
    "TRANSIENT",
    "UPSTREAM_4XX",
    "judge_400",
    "upstream_4xx",
    "wraps_a_4xx",
]

_THING = (
    r"(?:project|credentials?|api[ _-]?key|token|model|config(?:uration)?|setting|account|"
    r"permission|region|endpoint|url|uri|path|parameter|field|schema|format|version|image|file|"
    r"identifier)"
)
_WORD_CAUSES = (
    # each starts at a word boundary; the boundary is tested once for all of them (below)
    r"must (?:not )?[a-z]{2,}\b|"
    r"should (?!not happen|try|retry|wait)(?:not )?[a-z]{2,}\b|"
    r"got\s{0,3}[-+\d'\"`]|expected\b(?! 200)|"
    r"(?:is |are )?not (?:currently |yet |yet been )?(?:supported|available|allowed|permitted|"
    r"enabled|valid|recognized|accessible)\b|"
    r"(?:does|do|did|is|are|can) not (?:currently |yet )?(?:support|accept|allow|exist|match|"
    r"contain)|cannot be (?:used|combined|empty|null|set|specified|provided|sent|passed|"
    r"changed|modified)\b|"
    # two settings that exclude each other
    r"incompatible\b|not compatible\b|only one of\b|"
    r"(?:cannot|can't|can not) (?:(?:specify|set|use|pass|provide|send|combine) )?both\b|"
    r"mutually exclusive\b|simultaneously\b|"
    r"please use (?:a |an |the )?(?:different|valid|supported|another|one of)\b|"
    # an enumeration constraint: "developer is not one of ['system', 'user', …]"
    r"not one of\b|"
    r"unsupported\b|is required\b|required (?:field|parameter|property|argument)\b|"
    r"unknown (?:field|parameter|name|argument|property|tool|variant|value)\b|"
    r"exceed(?:s|ed)?\b|at (?:most|least)\b|not (?:provided|specified)\b|"
    r"field required\b|"
    r"too (?:long|large|many|short|big|small)\b|reserved\b|"
    r"no such\b|not found\b|"
    r"only supports?\b|out of range\b|malformed\b|invalid (?!request\b|response\b)\w|"
    r"not an? valid\b|please ensure\b|"
    r"missing [`'\"]?[\w.-]{1,40}[`'\"]? (?:field|parameter|property|argument|key)\b|"
    r"please check (?:the |your )?(?:documentation|docs|parameters|input)\b|"
    r"(?:max(?:imum)?|min(?:imum)?) (?:allowed|length|value|number|of|size|tokens)\b|"
    r"(?:longer|shorter|greater|larger|smaller|less) than\b|"
    # a bound the request went past, said as what may not be asked ("Cannot request more than
    # 5 logprobs", vLLM via held-out-28), and a request part called illegal ("\"messages\" in
    # request are illegal", held-out-27)
    r"(?:cannot|can't|can not|may not|must not|not) (?:[a-z]+ ){0,2}more than \d|"
    r"(?:is |are )?illegal\b|"
    # a requirement, a mismatch, something missing or empty
    r"requires?\b|mismatch|bad input\b|not met\b|"
    r"(?:is|are) missing\b|(?:is|are|was|were|has|have) (?:an? )?empty\b|"
    r"empty (?:content|message|text|string|array|list|input|prompt|body)\b|not enough\b|"
    r"duplicate\b|could not be (?:parsed|decoded|verified|processed|validated)\b|"
    r"not the same (?:number|count|length|type)\b|"
    # a negative said of a thing the request or its setup names (a project, a credential, a
    # model, a field, a schema): "Could not discover a valid Google Cloud Project ID", "the
    # provider rejected the gateway's credentials", "model identifier is invalid"
    r"(?:rejected|refused|denied|(?:could not|cannot|can't|unable to|failed to) "
    r"(?:find|discover|resolve|parse|validate|verify|decode|process|read|open))[^\n.]{0,40}?"
    rf"\b{_THING}s?\b|"
    rf"{_THING}s?\b[^\n.]{{0,30}}?\b(?:is |are |was )?"
    r"(?:rejected|not set|not valid|unknown|invalid)\b|"
    # a feature gated on an API version or a place ("json_schema is enabled only for api
    # versions 2024-08-01-preview and later", browser-use via held-out-31; "unavailable in
    # your region", Snowflake Cortex via held-out-30), a contracted negative ("isn't
    # supported", with either apostrophe)
    r"only (?:for|in|with|from|on) (?:the )?(?:api[ -]?)?versions?\b|"
    # a setting at fault, or a flag that says a retry cannot help (LiveKit's "Bad Request
    # (status_code=400, …, retryable=False)", held-out-41; ElevenLabs' "appears to be
    # misconfigured", held-out-41)
    r"misconfigured\b|(?:is_?)?retryable['\"]?\s{0,2}[=:]\s{0,2}false\b|"
    r"unavailable in (?:your|this|the|that) (?:region|country|location|area)\b|"
    r"(?:is|are)n['\u2019]t (?:supported|available|allowed|permitted|enabled|valid)\b"
)
_OTHER_CAUSES = (
    r"请检查(?:文档|参数)|"
    r"\d\s{0,2}[<>]=?\s{0,2}\d|"
    r"参数(?:非法|错误|有误|无效|不合法|不正确)|不支持|格式(?:错误|不正确)|"
    r"(?:超过|超出)(?:了)?(?:最大|上限|限制)|不能为空|缺少[^\n]{0,6}参数|"
    # a param field names the parameter; new-api puts the upstream's status there instead
    # (a parameter's name, or the upstream's 4xx new-api puts there; an API key or an
    # upstream 5xx or 429 there names no parameter)
    r"^param: (?:4\d\d|[a-z_][a-z0-9_.\[\]]{0,80})$|"
    # a location in the request: messages[3], messages.1.content, '/messages/*/content'
    r"(?<=[a-z_])(?:\[\d{1,6}\]|\.\d{1,6}\b)|'/[a-z_]{2,40}/|"
    # a server flag the request needs
    r"(?<![\w-])--[a-z][a-z0-9-]{2,40}\b|"
    # the Chinese for a format, parse or type error, too long, empty, out of range
    r"(?:格式|解析|类型|输入)[^\n]{0,6}?(?:错误|有误|失败|不正确|非法|无效)|超长|过长|太长|"
    r"为空|超出范围|弃用|"
    # the Japanese for a requirement, not supported, invalid, not found (MulmoCast's wording of
    # OpenAI's "organization must be verified": "…を利用するためには組織認証行ってください",
    # held-out-33)
    r"(?:を|は)?利用するため(?:に|には)|利用するには|サポートされていません|無効な|見つかりません|"
    r"(?:が|は)必要です|必要があります"
)
# One word-boundary test in front of all the word causes: the regex engine then skips a
# position inside a word at once, instead of failing each alternative's own \b there (about
# five times cheaper on a hostile 2 KiB message).
SPECIFIC = re.compile(rf"\b(?:{_WORD_CAUSES})|{_OTHER_CAUSES}", re.MULTILINE)
"""A 400 that names a parameter, a value, a constraint or a feature (searched lower-cased)."""

MODEL_OUTPUT = (
    r"\b(?:the )?(?:model|llm|generation)(?:'s)? (?:output|response|reply|completion|"
    r"generation|tool[ _]calls?|function[ _]calls?)\b"
    # a setting of the request named after the output ("response format", "output tokens")
    r"(?! ?(?:format|schema|mode|type|limit|length|size|tokens?|modalit))"
    r"[^\n.]{0,40}?\b(?:was |is |were )?"
    r"(?:invalid|malformed|empty|unparseable|truncated|incomplete|must contain|"
    r"could not be parsed|cannot be parsed)|"
    r"\b(?:model|llm)\b (?:returned|produced|generated|emitted|gave|sent) (?:an? )?"
    r"(?:empty|invalid|malformed|unparseable|incomplete|truncated|no) ?(?:output|content|"
    r"response|text|json|tool|function|candidates|choices|token|sequence)?|"
    r"\b(?:unable|failed|could not|cannot|can't) (?:to )?parse (?:the )?(?:model|llm|"
    r"generated)(?:'s)? (?:output|response|tool|function|json)|"
    r"\b(?:error|failed|failure) parsing (?:the )?(?:tool|function) call\b|"
    r"\binvalid (?:json|content|output) (?:in|from) (?:the )?(?:response from )?(?:the )?"
    r"(?:model|llm)\b|\bempty response from (?:the )?(?:model|llm)\b"
)
"""The model's own output named as faulty (malformed, empty, unparseable): a bad draw, not a
fault of the request, so another draw may succeed (searched case-blind)."""

TRANSIENT = re.compile(
    # ("retry" inside a dotted code name, a Java package such as ai.retry, is not a word, nor
    # a client's log of its own retries, nor "retry … with" something else, which asks for
    # another request: "Retry your request with the ID or ARN of an inference profile",
    # Bedrock via held-out-30; a place a model is unavailable in is no passing state)
    r"temporar|(?<!and )try again(?! with (?:a|an|the|another|different|valid)\b)|"
    r"(?<!\.)(?<!last )retry(?!\.|\)|able\W{1,4}false\b|(?: your| the)? (?:request )?with "
    r"(?:a|an|the|another|different|valid)\b)|busy|overload|"
    r"unavailable(?! in (?:your|this|the|that) (?:region|country|location|area)\b)|time ?out|"
    r"timed out|capacity|"
    r"rate[ _-]?limit|throttl|upstream (?:error|failure)|bad gateway|暂时|稍后|繁忙|"
    r"connection (?:reset|refused|closed|error)|reset before headers|socket hang up|"
    r"econnreset|etimedout|(?<![a-z])eof\b|please wait|wait before|no slots|deadline|"
    r"しばらく|混雑|過負荷|잠시 후|혼잡|과부하|más tarde|mais tarde|plus tard|später|позже|"
    # a refusal qualified by time ("not available right now") is a state, not the request's
    r"right now|at the moment|at this time|for now|momentarily|workers?\b|"
    # a model or a server still starting: its state, not the request's
    r"loading|warming up|cold start",
)
"""A transient cause named anywhere (searched lower-cased): never judged fatal by shape."""

_MODEL_OUTPUT = re.compile(MODEL_OUTPUT)
_MODEL_WORDS = ("model", "llm", "generation", "parsing")

GENERIC = re.compile(r"<(?:!doctype|html|head|body)\b")
"""An HTML page (a proxy's error page): says nothing about the request."""

UPSTREAM_4XX = re.compile(
    r"(?:error code|status code|status|code|http)[\"': =]{1,4}4(?:00|01|03|04|13|22)\b|"
    r"\[4(?:00|01|03|04|13|22)\]|(?:badrequest|unprocessableentity)error\b|"
    r"\b4(?:00|01|03|04|13|22) (?:bad request|unauthorized|forbidden|not found|unprocessable)"
)
"""An upstream client error carried inside a relay's 5xx (searched lower-cased)."""

_LABELS = re.compile(
    r"^(?:type|code|status|status_code|statuscode|error_code|object): [^\n]*$", re.M
)


_MAX_MESSAGE = 2048
_WRAPPED = re.compile(r"(?<=\S)[ \t]?\n[ \t]{2,}")
"""A line break and the indent of a wrapped line, as a terminal UI pastes a long message
("… must\n  be passed back", free-claude-code via held-out-20): one space."""


def judge_400(text: str, lowered: str | None = None) -> Classification:
    """The verdict for a 400 whose error ``text`` matched no rule and no structured reader.

    ``lowered`` is ``text.lower()``, passed when the caller has it already: the patterns are
    searched in the lower-cased text, which is cheaper than a case-blind search.
    """
    low = text.lower() if lowered is None else lowered
    if GENERIC.search(low[:2048]) is not None:
        return Classification(Verdict.UNRECOGNISED, "shape: an HTML page")
    if TRANSIENT.search(low) is not None:
        return Classification(Verdict.UNRECOGNISED, "shape: names a transient cause")
    if any(word in low for word in _MODEL_WORDS) and _MODEL_OUTPUT.search(low) is not None:
        # the model's output at fault, not the request: another draw may succeed
        return Classification(Verdict.UNRECOGNISED, "shape: names a fault of the model's output")
    # Causes are named near the start; reading 2 KiB keeps a hostile body's cost bounded.
    message = _LABELS.sub("", low[:_MAX_MESSAGE])
    if "\n " in message:
        message = _WRAPPED.sub(" ", message)
    found = SPECIFIC.search(message)
    if found is not None:
        start = found.start()
        if message[start] in ".[":
            # a location in the request: name the field it indexes ("messages.4", not ".4")
            stop = max(0, start - 40)
            while start > stop and (message[start - 1].isalnum() or message[start - 1] in "_."):
                start -= 1
        cause = message[start : found.end()].strip()
        return Classification(Verdict.FATAL, f"shape: names a cause ({cause!r})")
    return Classification(Verdict.UNRECOGNISED, "shape: generic")


def upstream_4xx(lowered: str) -> re.Match[str] | None:
    """Where lower-cased error text names an upstream 400, 401, 403, 404, 413 or 422."""
    return UPSTREAM_4XX.search(lowered[:_MAX_MESSAGE])


def wraps_a_4xx(lowered: str) -> bool:
    """Whether lower-cased error text carries an upstream 400, 401, 403, 404, 413 or 422."""
    return upstream_4xx(lowered) is not None
