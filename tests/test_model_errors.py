"""The classification boundary: HTTP statuses and httpx exceptions → our exception tree."""

from __future__ import annotations

import inspect
import re
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest

from trio_designer._exceptions import (
    GenerationError,
    ModelConnectionError,
    ModelRateLimitedError,
    ModelRequestError,
    ModelServerError,
    ModelTimeoutError,
)
from trio_designer.models._errors import (
    EXCERPT_LIMIT,
    HTTPX_EXCEPTIONS,
    TRANSPORT_ERROR_TABLE,
    error_from_malformed_response,
    error_from_status,
    error_from_transport,
    excerpt,
    parse_retry_after,
    redact,
    transport_rule,
)

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


def test_rate_limited_reads_httpx_headers() -> None:
    """httpx.Headers (case-insensitive) work as well as plain dicts."""
    headers = httpx.Headers({"RETRY-AFTER": "4"})
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
        r"\(the server asks to wait 2 s\); the model's limiter backs off and the cell will be "
        r"retried later\. Server said: Too many requests",
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
        "Model 'gen' at provider 'acme' answered HTTP 200 but the body has no choices; the cell "
        "will be retried later. Body: {}"
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
# httpx exceptions: every exported class is mapped, explicitly
# ---------------------------------------------------------------------------------------------

REQUEST = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")

#: The classification every httpx exception must get. Kept in the test on purpose: changing the
#: table in _errors.py without meaning to fails here.
EXPECTED: dict[str, type[GenerationError]] = {
    "HTTPError": ModelConnectionError,
    "RequestError": ModelConnectionError,
    "TransportError": ModelConnectionError,
    "TimeoutException": ModelTimeoutError,
    "ConnectTimeout": ModelTimeoutError,
    "ReadTimeout": ModelTimeoutError,
    "WriteTimeout": ModelTimeoutError,
    "PoolTimeout": ModelTimeoutError,
    "NetworkError": ModelConnectionError,
    "ConnectError": ModelConnectionError,
    "ReadError": ModelConnectionError,
    "WriteError": ModelConnectionError,
    "CloseError": ModelConnectionError,
    "ProtocolError": ModelConnectionError,
    "RemoteProtocolError": ModelConnectionError,
    "LocalProtocolError": ModelRequestError,
    "ProxyError": ModelConnectionError,
    "UnsupportedProtocol": ModelRequestError,
    "DecodingError": ModelConnectionError,
    "TooManyRedirects": ModelRequestError,
    "HTTPStatusError": ModelServerError,  # built below with a 503 response
    "InvalidURL": ModelRequestError,
    "CookieConflict": ModelRequestError,
    "StreamError": ModelRequestError,
    "StreamConsumed": ModelRequestError,
    "StreamClosed": ModelRequestError,
    "ResponseNotRead": ModelRequestError,
    "RequestNotRead": ModelRequestError,
}


def httpx_exception_classes() -> list[type[Exception]]:
    """Every exception class httpx exports, found by walking ``httpx.__all__``."""
    found = []
    for name in httpx.__all__:
        obj = getattr(httpx, name)
        if inspect.isclass(obj) and issubclass(obj, BaseException):
            assert issubclass(obj, Exception), name
            found.append(obj)
    return found


def instantiate(cls: type[Exception]) -> Exception:
    """An instance of any httpx exception class, whatever its constructor wants."""
    if cls is httpx.HTTPStatusError:
        response = httpx.Response(503, request=REQUEST, text="upstream overloaded")
        return httpx.HTTPStatusError("503", request=REQUEST, response=response)
    params = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
    if not params:
        return cls()
    if any(p.name == "request" for p in params):
        return cls("boom", request=REQUEST)  # type: ignore[call-arg]
    return cls("boom")


def test_httpx_exports_the_exceptions_we_know() -> None:
    """If httpx adds or renames an exception class, this test names it."""
    assert {cls.__name__ for cls in httpx_exception_classes()} == set(EXPECTED)


@pytest.mark.parametrize("cls", httpx_exception_classes(), ids=lambda cls: cls.__name__)
def test_every_httpx_exception_is_mapped_explicitly(cls: type[Exception]) -> None:
    """Each exported class has its own table entry and maps to the expected class."""
    assert cls in TRANSPORT_ERROR_TABLE, f"httpx.{cls.__name__} has no entry"
    assert issubclass(cls, HTTPX_EXCEPTIONS)
    exc = instantiate(cls)
    assert isinstance(exc, HTTPX_EXCEPTIONS)
    error = error_from_transport(exc, where=WHERE)
    assert type(error) is EXPECTED[cls.__name__]
    assert "unexpected HTTP error" not in str(error)  # the generic fallback
    if isinstance(error, ModelRequestError) and cls is not httpx.HTTPStatusError:
        assert error.status is None
        assert error.reason == "bad_request"


def test_transport_message_is_pinned() -> None:
    """The message says what failed, the httpx class and detail, and what happens next."""
    error = error_from_transport(httpx.ReadTimeout("timed out", request=REQUEST), where=WHERE)
    assert str(error) == (
        "Calling model 'gen' at provider 'acme' failed: timed out waiting for the response "
        "(ReadTimeout: timed out). The cell will be retried later; if this persists, raise the "
        "timeout."
    )
    empty = error_from_transport(httpx.ConnectError("", request=REQUEST), where=WHERE)
    assert "(ConnectError: no details)" in str(empty)


def test_transport_messages_redact_secrets() -> None:
    """Exception text is redacted like bodies are."""
    exc = httpx.InvalidURL("Invalid URL 'http://h/?key=sk-secret-123456'")
    error = error_from_transport(exc, secrets=["sk-secret-123456"])
    assert "sk-secret" not in str(error)


def test_unknown_subclass_falls_back_to_nearest_ancestor() -> None:
    """A subclass a future httpx (or a transport) adds is classified like its parent."""

    class SlowBody(httpx.ReadTimeout):
        pass

    assert transport_rule(SlowBody) is TRANSPORT_ERROR_TABLE[httpx.ReadTimeout]
    error = error_from_transport(SlowBody("slow", request=REQUEST))
    assert isinstance(error, ModelTimeoutError)
    assert transport_rule(ValueError) is None


def test_status_error_is_classified_by_its_response() -> None:
    """httpx.HTTPStatusError delegates to the status rules (here: 429 with Retry-After)."""
    response = httpx.Response(429, request=REQUEST, headers={"Retry-After": "7"}, text="slow")
    error = error_from_transport(
        httpx.HTTPStatusError("429", request=REQUEST, response=response), where=WHERE
    )
    assert isinstance(error, ModelRateLimitedError)
    assert error.retry_after == 7.0


def test_docs_error_table_names_every_httpx_exception() -> None:
    """docs/errors.md lists every httpx exception class, so the docs cannot drift silently."""
    text = DOCS.read_text(encoding="utf-8")
    missing = [name for name in EXPECTED if f"`{name}`" not in text]
    assert missing == []
