"""The proxy's HTTP/1.1 parsing (clown.proxy.http): requests from agents, responses from upstreams."""

import pytest

from clown.proxy.http import (BODY_CHUNKED, BODY_LENGTH, BODY_NONE, BODY_UNTIL_CLOSE, HTTPError, RequestReader,
                              ResponseReader, UpstreamProtocolError)

CHUNKED_REQUEST = (b"POST /v1/messages?beta=true HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                   b"X-Api-Key: k\r\nx-api-key: second\r\n\r\n"
                   b"5;name=value\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\ntrailer: t\r\n\r\n")


def read_all(reader: RequestReader, data: bytes, step: int) -> list:
    """Feed ``data`` ``step`` bytes at a time; every (head, body) read."""
    requests = []
    for index in range(0, len(data), step):
        reader.feed(data[index:index + step])
        while True:
            if reader.head is None and reader.read_head() is None:
                break
            body = reader.read_body()
            if body is None:
                break
            requests.append((reader.head, body))
            reader.next_request()
    return requests


@pytest.mark.parametrize("step", [1, 2, 7, 1000])
def test_a_chunked_request_reads_the_same_however_it_is_split(step):
    requests = read_all(RequestReader(1000), CHUNKED_REQUEST + CHUNKED_REQUEST, step)
    assert len(requests) == 2
    for head, body in requests:
        assert body == b"hello world"
        assert (head.method, head.target, head.path, head.version) == \
            ("POST", "/v1/messages?beta=true", "/v1/messages", "HTTP/1.1")
        assert head.content_length is None and head.keep_alive
        assert head.get("x-api-key") == "k, second"
        assert head.headers[0] == ("Host", "h")


def test_a_content_length_request_and_the_next_one_pipelined():
    data = (b"\r\nPOST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
            b"GET /b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    (first, first_body), (second, second_body) = read_all(RequestReader(10), data, 1000)
    assert (first.target, first_body, first.keep_alive) == ("/a", b"abc", True)
    assert (second.target, second_body, second.keep_alive) == ("/b", b"", False)


def test_http_1_0_closes_and_needs_no_host():
    [(head, body)] = read_all(RequestReader(10), b"GET / HTTP/1.0\r\n\r\n", 1000)
    assert head.version == "HTTP/1.0" and not head.keep_alive and body == b""


def test_expect_100_continue_is_noted():
    reader = RequestReader(10)
    reader.feed(b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\n")
    head = reader.read_head()
    assert head.expect_continue and reader.read_body() is None
    reader.feed(b"ok")
    assert reader.read_body() == b"ok"


@pytest.mark.parametrize("data, status, message", [
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
     "clown proxy: both Content-Length and Transfer-Encoding"),
    (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
     "clown proxy: Transfer-Encoding in an HTTP/1.0 request"),
    (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 501,
     "clown proxy: only the chunked transfer coding is supported"),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n", 413,
     "clown proxy: request body of 11 bytes is over the 10-byte cap"),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \xd9\xa3\r\n\r\n", 400, "clown proxy: bad Content-Length"),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n", 400,
     "clown proxy: bad Content-Length"),
    (b"POST / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400,
     "clown proxy: an HTTP/1.1 request needs exactly one Host header"),
    (b"POST / HTTP/1.1\nHost: h\r\n\r\n", 400, "clown proxy: malformed request line"),
    (b"POST / HTTP/1.1\r\nHost: h\r\nx: \xff\x7f\r\n\r\n", 400, "clown proxy: malformed header line"),
    (b"POST / HTTP/1.1\r\nHost: h\r\n\xe9t\xe9: v\r\n\r\n", 400, "clown proxy: malformed header line"),
    (b"POST / HTTP/1.1\r\nHost: h\r\n: empty name\r\n\r\n", 400, "clown proxy: malformed header line"),
])
def test_ambiguous_or_malformed_heads_are_refused(data, status, message):
    reader = RequestReader(10)
    reader.feed(data)
    with pytest.raises(HTTPError) as caught:
        reader.read_head()
    assert (caught.value.status, caught.value.message) == (status, message)


@pytest.mark.parametrize("body, message", [
    (b"g\r\n", "clown proxy: bad chunk size"),
    (b"1\r\nab\r\n", "clown proxy: a chunk does not end with CRLF"),
    (b"1\nab\r\n", "clown proxy: bad chunk size"),
    (b"0\r\nbad\x00trailer\r\n\r\n", "clown proxy: malformed chunked trailer"),
    (b"1" * 5000, "clown proxy: bad chunk size line"),
])
def test_bad_chunks_are_refused(body, message):
    reader = RequestReader(100)
    reader.feed(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    reader.read_head()
    with pytest.raises(HTTPError) as caught:
        reader.read_body()
    assert (caught.value.status, caught.value.message) == (400, message)


def test_chunks_adding_up_over_the_cap_are_413():
    reader = RequestReader(10)
    reader.feed(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n6\r\n")
    reader.read_head()
    with pytest.raises(HTTPError) as caught:
        reader.read_body()
    assert (caught.value.status, caught.value.message) == (413, "clown proxy: request body is over the 10-byte cap")


# --- responses -------------------------------------------------------------------------------

def read_response(method: str, data: bytes, step: int) -> tuple[ResponseReader, bytes, bool]:
    reader = ResponseReader(method)
    body, ended, head_done = b"", False, False
    for index in range(0, len(data), step):
        piece = data[index:index + step]
        if not head_done:
            if not reader.read_head(piece):
                continue
            head_done, piece = True, b""
        payload, ended = reader.read_body(piece)
        body += payload
    return reader, body, ended


@pytest.mark.parametrize("step", [1, 3, 1000])
def test_a_chunked_answer_after_a_100_continue_reads_the_same_however_it_is_split(step):
    data = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nRequest-Id: r1\r\n\r\n"
            b"4\r\ndata\r\n3;x=y\r\n: a\r\n0\r\nx-trailer: 1\r\n\r\n")
    reader, body, ended = read_response("POST", data, step)
    assert (reader.status, reader.reason, reader.framing) == (200, "OK", BODY_CHUNKED)
    assert body == b"data: a" and ended and reader.reusable
    assert reader.header("request-id") == "r1"


def test_a_content_length_answer_ends_with_its_last_byte():
    reader, body, ended = read_response("POST", b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\nhello", 2)
    assert (reader.status, reader.framing, body, ended, reader.reusable) == (201, BODY_LENGTH, b"hello", True, True)


def test_answers_without_a_body():
    reader, body, ended = read_response("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", 1000)
    assert (reader.framing, body, ended) == (BODY_NONE, b"", True)
    reader, body, ended = read_response("POST", b"HTTP/1.1 204 No Content\r\n\r\n", 1000)
    assert (reader.framing, body, ended) == (BODY_NONE, b"", True)


def test_an_answer_until_close_ends_at_eof_and_is_not_reused():
    reader, body, ended = read_response("GET", b"HTTP/1.1 200 OK\r\n\r\nsome bytes", 4)
    assert (reader.framing, body, ended) == (BODY_UNTIL_CLOSE, b"some bytes", False)
    assert reader.at_eof() == (b"", True) and not reader.reusable


def test_bytes_past_the_content_length_are_dropped_with_the_connection():
    reader, body, ended = read_response("GET", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nabc", 1000)
    assert (body, ended, reader.reusable) == (b"ab", True, False)


def test_connection_close_from_the_upstream_is_not_reused():
    reader, _, ended = read_response("GET", b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", 1000)
    assert ended and not reader.reusable


def test_an_answer_cut_short_raises_at_eof():
    reader, body, ended = read_response("GET", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf", 1000)
    assert (body, ended) == (b"half", False)
    with pytest.raises(UpstreamProtocolError, match="closed the connection before the end of the body"):
        reader.at_eof()


@pytest.mark.parametrize("data, message", [
    (b"SSH-2.0-OpenSSH\r\n\r\n", "did not answer HTTP"),
    (b"HTTP/1.1 2000 OK\r\n\r\n", "did not answer HTTP"),
    (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "switched protocols"),
    (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "malformed header line"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n", "bad Content-Length"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n", "bad chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n", "does not end with CRLF"),
])
def test_a_broken_answer_raises(data, message):
    with pytest.raises(UpstreamProtocolError, match=message):
        read_response("GET", data, 1000)


def test_a_large_body_in_small_pieces_arrives_whole():
    body = bytes(range(256)) * 4096          # 1 MiB
    data = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    [(head, received)] = read_all(RequestReader(len(body)), data, 1500)
    assert head.content_length == len(body) and received == body
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 5000]), body[i:i + 5000]) for i in range(0, len(body), 5000))
    data = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked + b"0\r\n\r\n"
    [(head, received)] = read_all(RequestReader(len(body)), data, 1500)
    assert received == body
