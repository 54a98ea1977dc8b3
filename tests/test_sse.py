"""The incremental SSE parser: same events however the bytes are split, same as openai-python."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from openai._streaming import SSEDecoder

from gatewaylib.sse import SSEEvent, SSEParser


def parse_all(chunks: list[bytes]) -> list[SSEEvent]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    return events


def openai_events(data: bytes) -> list[SSEEvent]:
    return [SSEEvent(e.event, e.data, e.id, e.retry) for e in SSEDecoder().iter_bytes(iter([data]))]


def test_anthropic_framing_and_split_payload() -> None:
    """event:/data: pairs parse, and a JSON payload split across reads is parsed once (vector 71)."""
    stream = (
        b'event: message_start\ndata: {"type":"message_start"}\n\n'
        b"event: ping\ndata: {\"type\": \"ping\"}\n\n"
        b'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"text":"h\xc3\xa9"}}\n\n'
    )
    cut = stream.index(b"h\xc3") + 2  # inside the multi-byte character
    events = parse_all([stream[:cut], stream[cut:]])
    assert [e.event for e in events] == ["message_start", "ping", "content_block_delta"]
    assert events[2].data == '{"type":"content_block_delta","delta":{"text":"hé"}}'


def test_crlf_comments_and_multiline_data() -> None:
    """CRLF and CR line ends, comments and multi-line data follow the event-stream rules."""
    stream = b": keep-alive\r\ndata: a\r\ndata: b\r\n\r\nevent: x\rdata: c\r\r"
    assert parse_all([stream]) == [SSEEvent(None, "a\nb"), SSEEvent("x", "c")]
    assert parse_all([bytes([b]) for b in stream]) == [SSEEvent(None, "a\nb"), SSEEvent("x", "c")]


def test_incomplete_final_event_is_not_dispatched() -> None:
    """An event without its blank line (a cut stream) is never reported."""
    assert parse_all([b"data: [DONE]\n"]) == []


_line = st.one_of(
    st.text(alphabet="abcé€😀 {}\":,", max_size=12).map(lambda t: f"data: {t}"),
    st.sampled_from(["event: message_start", "event: ping", ": comment", "data:", "id: 7", "retry: 30", "retry: x", "data:x"]),
    st.just(""),
)
_ending = st.sampled_from(["\n", "\r\n", "\r"])


@st.composite
def streams_and_cuts(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    lines = draw(st.lists(st.tuples(_line, _ending), max_size=30))
    data = "".join(line + end for line, end in lines).encode()
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    return data, cuts


@settings(max_examples=1500, deadline=None)
@given(streams_and_cuts())
def test_any_split_gives_the_same_events_as_openai_python(case: tuple[bytes, list[int]]) -> None:
    """Split anywhere (single bytes, inside CRLF or a UTF-8 character): the events equal the
    unsplit parse and openai-python's own decoder."""
    data, cuts = case
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    whole = parse_all([data])
    assert parse_all(pieces) == whole
    assert parse_all([bytes([b]) for b in data]) == whole
    assert whole == openai_events(data)
