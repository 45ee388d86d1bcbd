"""The classification boundary: HTTP statuses and HTTP-layer failures → our exception tree."""

from __future__ import annotations

import builtins
import inspect
import re
import socket
import ssl
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import h11
import httptools.parser.errors as httptools_errors
import httpx
import pytest
import trio

from trio_designer._exceptions import (
    GenerationError,
    ModelConnectionError,
    ModelContentFilteredError,
    ModelRateLimitedError,
    ModelRequestError,
    ModelServerError,
    ModelTimeoutError,
)
from trio_designer.models import _http, _httpx_transport, _transport
from trio_designer.models._errors import (
    EXCERPT_LIMIT,
    TRANSPORT_ERROR_TABLE,
    error_from_malformed_response,
    error_from_status,
    error_from_transport,
    excerpt,
    parse_retry_after,
    redact,
    transport_rule,
)
from trio_designer.models._httpx_transport import HTTPX_ERROR_TABLE

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
WHERE = "model 'gen' at provider 'acme'"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "errors.md"


def classify(status: int, body: str = "", headers: dict[str, str] | None = None) -> GenerationError:
    return error_from_status(status, body, headers or {}, now=NOW, where=WHERE)


# ---------------------------------------------------------------------------------------------
# Retry-After
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("-3", 0.0),
        (None, None),
        ("", None),
        ("   ", None),
        ("soon", None),
        ("inf", None),
        ("nan", None),
    ],
)
def test_parse_retry_after_seconds(value: str | None, expected: float | None) -> None:
    """Delay-seconds parse as floats clamped at 0; junk and absent values give None."""
    assert parse_retry_after(value, now=NOW) == expected


def test_parse_retry_after_http_date_is_relative_to_now() -> None:
    """An HTTP date becomes seconds from ``now``; a past date clamps to 0."""
    future = format_datetime(NOW + timedelta(seconds=90), usegmt=True)
    past = format_datetime(NOW - timedelta(hours=1), usegmt=True)
    assert parse_retry_after(future, now=NOW) == 90.0
    assert parse_retry_after(past, now=NOW) == 0.0
    assert parse_retry_after("Wed, 26 Nov 2026 12:00:30 GMT", now=NOW) == 30.0


def test_parse_retry_after_accepts_naive_now_as_utc() -> None:
    """A naive ``now`` is read as UTC rather than crashing on aware/naive subtraction."""
    naive = NOW.replace(tzinfo=None)
    assert parse_retry_after("Wed, 26 Nov 2026 12:00:10 GMT", now=naive) == 10.0


# ---------------------------------------------------------------------------------------------
# Statuses
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "kind", "reason"),
    [
        (429, "slow down", ModelRateLimitedError, None),
        (408, "", ModelTimeoutError, None),
        (500, "oops", ModelServerError, None),
        (502, "bad gateway", ModelServerError, None),
        (503, "", ModelServerError, None),
        (504, "", ModelServerError, None),
        (599, "", ModelServerError, None),
        (400, "temperature must be <= 2", ModelRequestError, "bad_request"),
        (401, "Incorrect API key provided", ModelRequestError, "authentication"),
        (402, "", ModelRequestError, "quota"),
        (403, "forbidden", ModelRequestError, "permission"),
        (404, "The model `gne` does not exist", ModelRequestError, "not_found"),
        (409, "conflict", ModelRequestError, "bad_request"),
        (413, "Request Entity Too Large", ModelRequestError, "too_large"),
        (422, "field required", ModelRequestError, "unprocessable"),
        (451, "", ModelRequestError, "bad_request"),
        (301, "", ModelRequestError, "bad_request"),
        (200, "", ModelServerError, None),
        (600, "", ModelServerError, None),
    ],
)
def test_status_classification(
    status: int, body: str, kind: type[GenerationError], reason: str | None
) -> None:
    """Each status lands on the class (and reason) the scheduler acts on."""
    error = classify(status, body)
    assert type(error) is kind
    if reason is not None:
        assert isinstance(error, ModelRequestError)
        assert error.reason == reason
        assert error.status == status
        assert not error.retryable
    if isinstance(error, ModelServerError):
        assert error.status == status
        assert error.retryable


@pytest.mark.parametrize(
    "body",
    [
        "This model's maximum context length is 4096 tokens. However, you requested 5000.",
        '{"error": {"message": "too long", "code": "context_length_exceeded"}}',
        "Input exceeds the context window of the model",
        "Too many tokens: 9000 > 8192",
        "prompt is too long: 210000 tokens > 200000 maximum",
    ],
)
@pytest.mark.parametrize("status", [400, 413, 422])
def test_context_window_bodies(status: int, body: str) -> None:
    """400/413/422 bodies about the context size are context-window errors."""
    error = classify(status, body)
    assert isinstance(error, ModelRequestError)
    assert error.reason == "context_window"


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (
            429,
            '{"error": {"type": "insufficient_quota", "message": "You exceeded your '
            'current quota, please check your plan and billing details."}}',
        ),
        (400, "Your credit balance is too low"),
        (500, "billing hard limit reached"),
        (403, "Monthly quota exhausted"),
        (404, "insufficient credits"),
    ],
)
def test_quota_bodies_win_over_the_status(status: int, body: str) -> None:
    """Quota/billing bodies are checked first, whatever the status (even 429 and 5xx)."""
    error = classify(status, body)
    assert isinstance(error, ModelRequestError)
    assert error.reason == "quota"
    assert error.status == status


@pytest.mark.parametrize(
    "body",
    [
        '{"error": {"code": "content_filter", "message": "The response was filtered due to the '
        "prompt triggering Azure OpenAI's content management policy.\"}}",
        "content filter triggered",
    ],
)
def test_a_filtered_prompt_is_a_content_filter_error(body: str) -> None:
    """A 400 saying the content filter refused the prompt: its own class, not retryable."""
    error = classify(400, body)
    assert type(error) is ModelContentFilteredError
    assert error.status == 400
    assert not error.retryable
    assert "content filter refused the prompt" in str(error)
    # Only a 400 says so: the same words in a 500 stay a server error.
    assert type(classify(500, body)) is ModelServerError


def test_per_minute_quota_on_429_is_a_rate_limit() -> None:
    """On a 429 a bare "quota" is a per-minute budget, which passes: still rate limited."""
    error = classify(429, "Quota exceeded for metric: requests per minute", {"Retry-After": "3"})
    assert isinstance(error, ModelRateLimitedError)
    assert error.retry_after == 3.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "2"}, 2.0),
        ({"retry-after": "0.25"}, 0.25),
        ({"Retry-After": "Wed, 26 Nov 2026 12:00:05 GMT"}, 5.0),
        ({"Retry-After": "Wed, 26 Nov 2026 11:00:05 GMT"}, 0.0),
        ({"retry-after-ms": "1500", "Retry-After": "9"}, 1.5),
        ({"retry-after-ms": "junk", "Retry-After": "9"}, 9.0),
        ({"Retry-After": "later"}, None),
        ({}, None),
    ],
)
def test_rate_limited_carries_retry_after(headers: dict[str, str], expected: float | None) -> None:
    """429's retry_after comes from retry-after-ms or Retry-After, seconds or date, >= 0."""
    error = classify(429, "rate limited", headers)
    assert isinstance(error, ModelRateLimitedError)
    assert error.retry_after == expected


def test_rate_limited_reads_mixed_case_headers() -> None:
    """Header names are matched case-insensitively, whatever the mapping's keys."""
    headers = {"RETRY-AFTER": "4"}
    error = error_from_status(429, "", headers, now=NOW)
    assert isinstance(error, ModelRateLimitedError)
    assert error.retry_after == 4.0


def test_status_message_is_pinned() -> None:
    """The message names who answered, the status, what to do, and the server's words."""
    body = '{"error": {"message": "Incorrect API key provided: sk-ab***yz.", "type": "x"}}'
    with pytest.raises(ModelRequestError) as info:
        raise classify(401, body)
    assert str(info.value) == (
        "Model 'gen' at provider 'acme' answered HTTP 401 Unauthorized: check the API key (the "
        "environment variable named by the provider's api_key_env). Server said: Incorrect API "
        "key provided: sk-ab***yz."
    )


def test_rate_limit_message_is_pinned() -> None:
    """A 429 message says it is rate limited, the hint, and that the cell is retried."""
    error = classify(429, "Too many requests", {"Retry-After": "2"})
    assert re.fullmatch(
        r"Model 'gen' at provider 'acme' answered HTTP 429 Too Many Requests: rate limited "
        r"\(the server asks to wait 2 s\)\. Server said: Too many requests",
        str(error),
    )


def test_default_where_without_names() -> None:
    """Without ``where`` the message still reads as a sentence."""
    error = error_from_status(503, "", {}, now=NOW)
    assert str(error).startswith("The model endpoint answered HTTP 503 Service Unavailable: ")
    assert str(error).endswith("Server said: (empty body)")


def test_redirect_names_the_location() -> None:
    """A 3xx means the base URL is wrong; the message says where it points."""
    error = classify(307, "", {"location": "https://api.example.com/v1/chat/completions"})
    assert isinstance(error, ModelRequestError)
    assert "redirects to https://api.example.com/v1/chat/completions" in str(error)
    assert "base_url" in str(error)


def test_malformed_success_is_a_retryable_server_error() -> None:
    """A 200 whose body is unusable is the server's fault: retryable, status 200."""
    error = error_from_malformed_response(200, "the body has no choices", "{}", where=WHERE)
    assert isinstance(error, ModelServerError)
    assert error.status == 200
    assert error.retryable
    assert str(error) == (
        "Model 'gen' at provider 'acme' answered HTTP 200 but the body has no choices (a "
        "server-side fault, transient). Body: {}"
    )


# ---------------------------------------------------------------------------------------------
# Excerpts and redaction
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"error": {"message": "bad temperature", "type": "invalid"}}', "bad temperature"),
        ('{"error": "model not loaded"}', "model not loaded"),
        ('{"detail": "Not Found"}', "Not Found"),
        ('{"message": "nope"}', "nope"),
        ('{"detail": [{"loc": ["body"], "msg": "x"}]}', '[{"loc": ["body"], "msg": "x"}]'),
        ('{"other": 1}', '{"other": 1}'),
        ("<html>\n  <b>502</b>\n</html>", "<html> <b>502</b> </html>"),
        ("", "(empty body)"),
        ("   \n", "(empty body)"),
    ],
)
def test_excerpt_quotes_the_server_message(body: str, expected: str) -> None:
    """The usual JSON error shapes are unwrapped; whitespace collapses to one line."""
    assert excerpt(body) == expected


def test_excerpt_is_trimmed() -> None:
    """At most EXCERPT_LIMIT characters, ending in an ellipsis when cut."""
    text = excerpt("word " * 500)
    assert len(text) <= EXCERPT_LIMIT == 300
    assert text.endswith("…")
    error = classify(400, "x" * 10_000)
    said = str(error).split("Server said: ", 1)[1]
    assert len(said) == EXCERPT_LIMIT


def test_redaction_replaces_secrets_before_cutting() -> None:
    """A key straddling the excerpt limit leaks no prefix; Bearer tokens are hidden too."""
    key = "sk-live-ABCDEFGHIJKLMNOP"
    body = "y" * (EXCERPT_LIMIT - 5) + key
    assert "sk-live" not in excerpt(body, [key])
    assert redact("Authorization: Bearer tok_12345", []) == "Authorization: Bearer ***"
    assert redact(f"k={key}; again {key}", [key, ""]) == "k=***; again ***"


def test_status_errors_redact_the_key_from_bodies() -> None:
    """A server echoing our headers into its error body never gets the key into a message."""
    key = "sk-test-0123456789abcdef"
    body = f'{{"error": {{"message": "bad header authorization: Bearer {key} (key={key})"}}}}'
    for status in (400, 401, 403, 404, 413, 422, 429, 500, 503, 302, 200):
        error = error_from_status(
            status, body, {"location": f"/x?k={key}"}, now=NOW, where=WHERE, secrets=[key]
        )
        assert key not in str(error)
        assert key not in repr(error)
        assert "***" in str(error)


# ---------------------------------------------------------------------------------------------
# The HTTP layer: every failure class is mapped; what each transport's layers raise is translated
# ---------------------------------------------------------------------------------------------

#: The classification every failure class of the HTTP layer must get. Kept in the test on
#: purpose: changing the table in _errors.py without meaning to fails here.
EXPECTED: dict[str, type[GenerationError]] = {
    "HTTPError": ModelConnectionError,
    "ConnectFailed": ModelConnectionError,
    "ConnectionBroken": ModelConnectionError,
    "ServerHungUp": ModelConnectionError,
    "ProtocolViolation": ModelConnectionError,
    "ProxyFailed": ModelConnectionError,
    "DecodingFailed": ModelConnectionError,
    "UnsupportedEncoding": ModelRequestError,  # br / zstd: the server does it every time
    "RequestTimedOut": ModelTimeoutError,
    "InvalidRequest": ModelRequestError,
    "ResponseTooLarge": ModelRequestError,
    "HTTPStatusError": ModelServerError,  # built below with a 503 response
}


def failure_classes() -> list[type[Exception]]:
    """Every exception class the HTTP layer exports, found by walking ``_transport.__all__``."""
    found = []
    for name in _transport.__all__:
        obj = getattr(_transport, name)
        if inspect.isclass(obj) and issubclass(obj, BaseException):
            found.append(obj)
    return found


def instantiate(cls: type[Exception]) -> _transport.HTTPError:
    """An instance of any failure class of the HTTP layer."""
    if cls is _transport.HTTPStatusError:
        response = _transport.Response(status=503, headers={}, body=b"upstream overloaded")
        return _transport.HTTPStatusError("HTTP 503", response=response)
    if cls is _transport.RequestTimedOut:
        return _transport.RequestTimedOut(timeout=7.0)
    if cls is _transport.ResponseTooLarge:
        return _transport.ResponseTooLarge(limit=1024, status=200, declared=4096)
    made = cls("boom")
    assert isinstance(made, _transport.HTTPError)
    return made


def test_http_layer_exports_the_failures_we_know() -> None:
    """If the HTTP layer gains or renames a failure class, this test names it."""
    assert {cls.__name__ for cls in failure_classes()} == set(EXPECTED)
    assert all(issubclass(cls, _transport.HTTPError) for cls in failure_classes())


@pytest.mark.parametrize("cls", failure_classes(), ids=lambda cls: cls.__name__)
def test_every_failure_class_is_mapped_explicitly(cls: type[Exception]) -> None:
    """Each exported failure class has its own table entry and maps to the expected class."""
    assert cls in TRANSPORT_ERROR_TABLE, f"_transport.{cls.__name__} has no entry"
    error = error_from_transport(instantiate(cls), where=WHERE)
    assert type(error) is EXPECTED[cls.__name__]
    assert "unexpected HTTP error" not in str(error)  # the generic fallback
    if isinstance(error, ModelRequestError) and cls is _transport.InvalidRequest:
        assert error.status is None
        assert error.reason == "bad_request"


# -- what the native transport's streams and h11 raise ----------------------------------------


def native_low_level_classes() -> list[type[BaseException]]:
    """What the streams, h11 and httptools can raise: every exception class in ``h11.__all__``
    and ``httptools.parser.errors.__all__``, trio's resource errors, and every ``OSError``
    subclass of builtins, ``socket`` and ``ssl``."""
    found: list[type[BaseException]] = []
    for module, names in (
        (h11, h11.__all__),
        (httptools_errors, httptools_errors.__all__),
        (builtins, dir(builtins)),
        (socket, dir(socket)),
        (ssl, dir(ssl)),
    ):
        for name in names:
            obj = getattr(module, name)
            if not (inspect.isclass(obj) and issubclass(obj, BaseException)):
                continue
            if module in (h11, httptools_errors) or issubclass(obj, OSError):
                found.append(obj)
    found += [trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError]
    return sorted(set(found), key=lambda cls: f"{cls.__module__}.{cls.__qualname__}")


def test_native_low_level_exceptions_include_h11s() -> None:
    """If h11 or httptools adds or renames an exception class, this test names it."""
    names = {cls.__name__ for cls in native_low_level_classes() if cls.__module__.startswith("h11")}
    assert names == {"LocalProtocolError", "ProtocolError", "RemoteProtocolError"}
    parsers = {
        cls.__name__ for cls in native_low_level_classes() if cls.__module__.startswith("httptools")
    }
    assert parsers == {
        "HttpParserError",
        "HttpParserCallbackError",
        "HttpParserInvalidStatusError",
        "HttpParserInvalidMethodError",
        "HttpParserInvalidURLError",
        "HttpParserUpgrade",
    }


@pytest.mark.parametrize(
    "cls",
    [
        httptools_errors.HttpParserError,
        httptools_errors.HttpParserInvalidStatusError,
        httptools_errors.HttpParserUpgrade,
    ],
)
def test_httptools_errors_are_the_server_breaking_the_protocol(cls: type[Exception]) -> None:
    """The answer parser refusing an answer (or one switching protocols unasked) is a
    ProtocolViolation, as h11's RemoteProtocolError is."""
    with (
        pytest.raises(_transport.ProtocolViolation, match="the server broke the HTTP protocol"),
        _http.translated(_transport.ConnectionBroken, "x"),
    ):
        raise cls("boom")


# -- what the httpx transport's httpx raises --------------------------------------------------

#: What every exception class httpx exports becomes in the httpx transport. Kept in the test on
#: purpose, like EXPECTED above.
HTTPX_EXPECTED: dict[str, type[_transport.HTTPError]] = {
    "HTTPError": _transport.HTTPError,
    "RequestError": _transport.HTTPError,
    "TransportError": _transport.ConnectionBroken,
    "TimeoutException": _transport.RequestTimedOut,
    "ConnectTimeout": _transport.RequestTimedOut,
    "ReadTimeout": _transport.RequestTimedOut,
    "WriteTimeout": _transport.RequestTimedOut,
    "PoolTimeout": _transport.RequestTimedOut,
    "NetworkError": _transport.ConnectionBroken,
    "ConnectError": _transport.ConnectFailed,
    "ReadError": _transport.ConnectionBroken,
    "WriteError": _transport.ConnectionBroken,
    "CloseError": _transport.ConnectionBroken,
    "ProtocolError": _transport.ProtocolViolation,
    "RemoteProtocolError": _transport.ProtocolViolation,
    "LocalProtocolError": _transport.InvalidRequest,
    "ProxyError": _transport.ProxyFailed,
    "UnsupportedProtocol": _transport.InvalidRequest,
    "DecodingError": _transport.DecodingFailed,
    "TooManyRedirects": _transport.InvalidRequest,
    "HTTPStatusError": _transport.HTTPStatusError,
    "InvalidURL": _transport.InvalidRequest,
    "CookieConflict": _transport.InvalidRequest,
    "StreamError": _transport.InvalidRequest,
    "StreamConsumed": _transport.InvalidRequest,
    "StreamClosed": _transport.InvalidRequest,
    "ResponseNotRead": _transport.InvalidRequest,
    "RequestNotRead": _transport.InvalidRequest,
}

HTTPX_REQUEST = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
ORIGIN, _ = _transport.parse_origin("http://127.0.0.1:9/v1")


def httpx_exception_classes() -> list[type[Exception]]:
    """Every exception class httpx exports, found by walking ``httpx.__all__``."""
    found = []
    for name in httpx.__all__:
        obj = getattr(httpx, name)
        if inspect.isclass(obj) and issubclass(obj, BaseException):
            assert issubclass(obj, Exception), name
            found.append(obj)
    return found


def test_httpx_exports_the_exceptions_we_know() -> None:
    """If httpx adds or renames an exception class, this test names it."""
    assert {cls.__name__ for cls in httpx_exception_classes()} == set(HTTPX_EXPECTED)


@pytest.mark.parametrize("cls", httpx_exception_classes(), ids=lambda cls: cls.__name__)
def test_every_httpx_exception_has_its_own_entry(cls: type[Exception]) -> None:
    """Each class httpx exports is listed in HTTPX_ERROR_TABLE (not left to an ancestor)."""
    assert cls in HTTPX_ERROR_TABLE, f"httpx.{cls.__name__} has no entry"


def instantiate_httpx(cls: type[Exception]) -> Exception:
    """An instance of any httpx exception class, whatever its constructor wants."""
    if cls is httpx.HTTPStatusError:
        response = httpx.Response(503, request=HTTPX_REQUEST, text="upstream overloaded")
        return httpx.HTTPStatusError("503", request=HTTPX_REQUEST, response=response)
    params = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
    if not params:
        return cls()
    if any(p.name == "request" for p in params):
        return cls("boom", request=HTTPX_REQUEST)  # type: ignore[call-arg]
    return cls("boom")


def some_instance(cls: type[BaseException]) -> BaseException:
    """``cls("boom")``, or of a subclass when ``cls`` is abstract (h11.ProtocolError)."""
    try:
        return cls("boom")
    except TypeError:
        return type(f"Some{cls.__name__}", (cls,), {})("boom")


#: (transport, an exception class its layers can raise), for the boundary test.
LOW_LEVEL = [
    pytest.param("native", cls, id=f"native-{cls.__module__}.{cls.__name__}")
    for cls in native_low_level_classes()
] + [
    pytest.param("httpx", cls, id=f"httpx-httpx.{cls.__name__}")
    for cls in httpx_exception_classes()
]


@pytest.mark.parametrize(("transport", "cls"), LOW_LEVEL)
def test_every_low_level_exception_is_translated(transport: str, cls: type[BaseException]) -> None:
    """What each transport's layers raise becomes an HTTPError chained from it, which the
    table above maps: OSError, trio and h11 exceptions for native, every class in
    ``httpx.__all__`` for httpx (each to the class HTTPX_EXPECTED names)."""
    if transport == "native":
        assert issubclass(cls, _http.LOW_LEVEL_ERRORS)
        exc = some_instance(cls)
        translation = _http.translated(_transport.ConnectFailed, "x")
    else:
        exc = instantiate_httpx(cls)  # type: ignore[arg-type]
        translation = _httpx_transport.translated(ORIGIN, 7.0)
    with pytest.raises(_transport.HTTPError) as info, translation:
        raise exc
    assert info.value.__cause__ is exc
    if transport == "httpx":
        assert type(info.value) is HTTPX_EXPECTED[cls.__name__]
    assert isinstance(error_from_transport(info.value, where=WHERE), GenerationError)


def test_translation_names_the_cause_behind_trios_wrapper() -> None:
    """A BrokenResourceError from a TLS stream is described by its ssl cause."""
    wrapped = trio.BrokenResourceError()
    wrapped.__cause__ = ssl.SSLCertVerificationError("certificate verify failed")
    with (
        pytest.raises(_transport.ConnectFailed, match=r"SSLCertVerificationError: .*verify failed"),
        _http.translated(_transport.ConnectFailed, "the TLS handshake failed"),
    ):
        raise wrapped


def test_h11_errors_keep_their_meaning() -> None:
    """Our request being invalid is not the server breaking the protocol."""
    with (
        pytest.raises(_transport.InvalidRequest),
        _http.translated(_transport.ConnectionBroken, "x"),
    ):
        raise h11.LocalProtocolError("illegal header")
    with (
        pytest.raises(_transport.ProtocolViolation),
        _http.translated(_transport.ConnectionBroken, "x"),
    ):
        raise h11.RemoteProtocolError("bad status line")


def test_httpx_translation_names_hang_ups_tls_and_the_os_cause() -> None:
    """httpx's hang-up is ServerHungUp; a connect failure caused by TLS names the handshake;
    messages show the OS error behind httpx's and httpcore's wrappers."""
    hung_up = _httpx_transport.translate(
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        origin=ORIGIN,
        timeout=7.0,
    )
    assert type(hung_up) is _transport.ServerHungUp
    connect = httpx.ConnectError("")
    connect.__cause__ = ssl.SSLCertVerificationError(
        1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"
    )
    tls = _httpx_transport.translate(connect, origin=ORIGIN, timeout=7.0)
    assert type(tls) is _transport.ConnectFailed
    assert str(tls) == (
        "the TLS handshake with http://127.0.0.1:9 failed: SSLCertVerificationError: "
        "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"
    )
    read = httpx.ReadError("socket connection broken")
    read.__context__ = ConnectionResetError(104, "Connection reset by peer")
    broken = _httpx_transport.translate(read, origin=ORIGIN, timeout=7.0)
    assert str(broken) == (
        "reading the answer failed: ConnectionResetError: [Errno 104] Connection reset by peer"
    )
    timed_out = _httpx_transport.translate(httpx.ReadTimeout("slow"), origin=ORIGIN, timeout=7.0)
    assert isinstance(timed_out, _transport.RequestTimedOut)
    assert timed_out.timeout == 7.0


def test_httpx_status_error_carries_its_response() -> None:
    """An httpx.HTTPStatusError (never raised by the transport) keeps status and body."""
    translated = _httpx_transport.translate(
        instantiate_httpx(httpx.HTTPStatusError), origin=ORIGIN, timeout=7.0
    )
    assert isinstance(translated, _transport.HTTPStatusError)
    assert translated.response.status == 503
    assert translated.response.body == b"upstream overloaded"
    error = error_from_transport(translated, where=WHERE)
    assert isinstance(error, ModelServerError)
    assert "upstream overloaded" in str(error)


def test_transport_message_is_pinned() -> None:
    """The message says who failed, what happened and what happens next."""
    error = error_from_transport(_transport.RequestTimedOut(timeout=7.0), where=WHERE)
    assert str(error) == (
        "Calling model 'gen' at provider 'acme' failed: no complete answer within 7 s (the "
        "timeout covers the whole request, from connecting to the last byte of the answer). "
        "A transient failure; if this persists, raise the model's timeout."
    )
    empty = error_from_transport(_transport.ConnectFailed(""), where=WHERE)
    assert "failed: could not connect to the server." in str(empty)


def test_too_large_message_names_model_limit_and_remedy() -> None:
    """An oversize answer is non-retryable and says which setting to raise."""
    error = error_from_transport(
        _transport.ResponseTooLarge(limit=1024, status=200, declared=4096), where=WHERE
    )
    assert isinstance(error, ModelRequestError)
    assert not error.retryable
    assert error.reason == "response_too_large"
    assert error.status == 200
    assert str(error) == (
        "Model 'gen' at provider 'acme' sent an answer larger than max_response_bytes (1,024 "
        "bytes; it announced 4,096 bytes); it was cut off there and the cell fails without a "
        "retry. If answers this long are expected, raise max_response_bytes for this model; "
        "otherwise lower max_tokens or check what the server sends."
    )


def test_transport_messages_redact_secrets() -> None:
    """Exception text is redacted like bodies are."""
    exc = _transport.ProxyFailed("the proxy answered: Bearer sk-secret-123456 is not allowed")
    error = error_from_transport(exc, secrets=["sk-secret-123456"])
    assert "sk-secret" not in str(error)


def test_unknown_subclass_falls_back_to_nearest_ancestor() -> None:
    """A subclass the HTTP layer may add later is classified like its parent."""

    class SlowBody(_transport.RequestTimedOut):
        pass

    assert transport_rule(SlowBody) is TRANSPORT_ERROR_TABLE[_transport.RequestTimedOut]
    error = error_from_transport(SlowBody(timeout=1.0))
    assert isinstance(error, ModelTimeoutError)
    assert transport_rule(ValueError) is None


def test_status_error_is_classified_by_its_response() -> None:
    """HTTPStatusError delegates to the status rules (here: 429 with Retry-After)."""
    response = _transport.Response(status=429, headers={"retry-after": "7"}, body=b"slow")
    error = error_from_transport(_transport.HTTPStatusError("429", response=response), where=WHERE)
    assert isinstance(error, ModelRateLimitedError)
    assert error.retry_after == 7.0


def test_docs_error_table_names_every_failure_class() -> None:
    """docs/errors.md lists every failure class and every httpx class the httpx transport
    translates, so the docs cannot drift silently."""
    text = DOCS.read_text(encoding="utf-8")
    missing = [name for name in EXPECTED if f"`{name}`" not in text]
    missing += [f"httpx.{name}" for name in HTTPX_EXPECTED if f"`httpx.{name}`" not in text]
    assert missing == []
