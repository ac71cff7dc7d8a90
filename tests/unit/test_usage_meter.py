import json

from clown.usage.meter import API_ANTHROPIC, API_CHAT, API_RESPONSES, ResponseMeter, api_of_path


def sse(*events):
    out = b""
    for name, data in events:
        out += (f"event: {name}\n" if name else "").encode() + b"data: " + json.dumps(data).encode() + b"\n\n"
    return out


ANTHROPIC_STREAM = sse(
    ("message_start", {"type": "message_start", "message": {"id": "msg_1", "model": "claude-sonnet-4-5", "usage": {
        "input_tokens": 100, "output_tokens": 1, "cache_creation_input_tokens": 10, "cache_read_input_tokens": 50}}}),
    ("content_block_delta", {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "\"usage\" hi"}}),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 20}}),
    ("message_stop", {"type": "message_stop"}),
)


def test_paths_pick_the_wire_format():
    assert api_of_path("/v1/messages?beta=true") == API_ANTHROPIC
    assert api_of_path("/v1/messages/count_tokens") is None
    assert api_of_path("/responses") == API_RESPONSES
    assert api_of_path("/v1/chat/completions") == API_CHAT


def test_anthropic_stream_merges_message_start_and_delta_usage_in_any_chunking():
    for size in (1, 7, 64, len(ANTHROPIC_STREAM)):
        meter = ResponseMeter(API_ANTHROPIC, streaming=True)
        for start in range(0, len(ANTHROPIC_STREAM), size):
            meter.feed(ANTHROPIC_STREAM[start:start + size])
        usage = meter.finish()
        assert usage.tokens() == {"input_tokens": 100, "output_tokens": 20, "cache_creation_input_tokens": 10,
                                  "cache_read_input_tokens": 50}
        assert (usage.model, usage.message_id) == ("claude-sonnet-4-5", "msg_1")
        assert meter.complete


def test_anthropic_delta_with_every_field_replaces_them():
    stream = sse(("message_start", {"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 5,
                                                                                             "output_tokens": 1}}}),
                 ("message_delta", {"type": "message_delta", "usage": {"input_tokens": 7, "output_tokens": 9,
                                                                       "cache_read_input_tokens": 3}}))
    meter = ResponseMeter(API_ANTHROPIC, True)
    meter.feed(stream)
    assert meter.finish().tokens() == {"input_tokens": 7, "output_tokens": 9, "cache_creation_input_tokens": 0,
                                       "cache_read_input_tokens": 3}


def test_anthropic_cache_creation_breakdown_wins_over_flat_field():
    meter = ResponseMeter(API_ANTHROPIC, False)
    meter.feed(json.dumps({"id": "msg_2", "model": "m", "usage": {
        "input_tokens": 1, "output_tokens": 2, "cache_creation_input_tokens": 999,
        "cache_creation": {"ephemeral_5m_input_tokens": 3, "ephemeral_1h_input_tokens": 4}}}).encode())
    assert meter.finish().cache_creation_input_tokens == 7


def test_responses_completed_splits_cached_tokens_out_of_input():
    stream = sse(("response.created", {"type": "response.created", "response": {"id": "resp_1", "model": "gpt-5"}}),
                 ("response.output_text.delta", {"type": "response.output_text.delta", "delta": "x"}),
                 ("response.completed", {"type": "response.completed", "response": {
                     "id": "resp_1", "model": "gpt-5", "usage": {"input_tokens": 150, "output_tokens": 20,
                                                                 "input_tokens_details": {"cached_tokens": 50}}}}))
    meter = ResponseMeter(API_RESPONSES, True)
    meter.feed(stream)
    usage = meter.finish()
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.output_tokens) == (100, 50, 20)
    assert usage.message_id == "resp_1"


def test_chat_stream_usage_chunk_and_done():
    stream = (b'data: {"id":"c1","model":"gpt-5","choices":[{"delta":{"content":"hi"}}]}\n\n'
              b'data: {"id":"c1","model":"gpt-5","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":3,'
              b'"prompt_tokens_details":{"cached_tokens":4}}}\n\ndata: [DONE]\n\n')
    meter = ResponseMeter(API_CHAT, True)
    meter.feed(stream[:stream.index(b"data: [DONE]")])
    assert meter.complete       # OpenAI's usage chunk (no choices) is the last that counts
    meter.feed(stream[stream.index(b"data: [DONE]"):])
    usage = meter.finish()
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.output_tokens) == (6, 4, 3)


def test_chat_stream_with_a_running_usage_in_every_chunk_counts_the_last_one():
    chunks = [{"id": "c2", "model": "m", "choices": [{"delta": {"content": "x"}}],
               "usage": {"prompt_tokens": 10, "completion_tokens": count}} for count in (1, 2, 3)]
    meter = ResponseMeter(API_CHAT, True)
    for chunk in chunks:
        meter.feed(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        assert not meter.complete       # more may come: complete at [DONE]
    meter.feed(b"data: [DONE]\n\n")
    assert meter.complete
    usage = meter.finish()
    assert (usage.input_tokens, usage.output_tokens) == (10, 3)


def test_garbage_never_raises_and_yields_no_usage():
    meter = ResponseMeter(API_ANTHROPIC, True)
    meter.feed(b"\x00\xffnot json {{{ data: \xfe\r\n\r\ndata: {\"type\":\"message_start\",\n\n" * 50)
    assert meter.finish() is None
    assert meter.malformed > 0
    body = ResponseMeter(API_ANTHROPIC, False)
    body.feed(b"<html>oops</html>")
    assert body.finish() is None
