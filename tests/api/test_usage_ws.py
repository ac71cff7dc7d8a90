"""Usage events on the /ws daemon event socket: import progress, and usage the proxies meter."""

import threading
import urllib.parse

import pytest

from tests.api.proxy_helpers import add_provider, create_profile, placeholder, send, start_proxy
from tests.clownd import Daemon
from tests.fakes.transcripts import write_claude_corpus
from tests.fakes.upstream import FakeUpstream
from tests.sessions_support import WsClient

TOKENS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
USAGE = {"input_tokens": 321, "output_tokens": 45, "cache_creation_input_tokens": 6, "cache_read_input_tokens": 789}


@pytest.fixture(scope="module")
def upstream():
    with FakeUpstream(usage=USAGE) as fake:
        yield fake


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, upstream):
    clownd = Daemon(tmp_path_factory.mktemp("usage-ws-home"), toml='[usage]\ntimezone = "UTC"\n').start()
    try:
        add_provider(clownd, "fakeanthropic", upstream.url)
        create_profile(clownd, "metered", "fakeanthropic")
        yield clownd
    finally:
        try:
            clownd.stop()
        finally:
            clownd.kill_everything()


def subscribe_usage(daemon) -> WsClient:
    client = WsClient(daemon)
    client.send({"type": "subscribe", "topics": ["usage"]})
    assert client.recv() == {"type": "subscribed", "topics": ["usage"]}
    return client


def test_an_import_reports_progress_then_usage_updated(daemon, tmp_path):
    corpus = write_claude_corpus(str(tmp_path / "claude"), sessions=4, entries=30)
    with subscribe_usage(daemon) as ws:
        answer = {}

        def post():
            answer["reply"] = daemon.post("/api/usage/import-claude?claude_dir="
                                          + urllib.parse.quote(str(tmp_path / "claude")), timeout=60)

        poster = threading.Thread(target=post)
        poster.start()
        updated = ws.wait_for(lambda message: message.get("event") == "usage_updated", timeout=60)
        poster.join(60)
        status, reply = answer["reply"]
        assert status == 200 and reply["success"] is True, reply
    messages = ws.received[1:]
    assert messages[-1] is updated
    progress = messages[:-1]
    assert progress, "no import_progress before usage_updated"
    for message in progress:
        assert set(message) == {"type", "topic", "event", "data"}
        assert (message["type"], message["topic"], message["event"]) == ("event", "usage", "import_progress")
        assert set(message["data"]) == {"done_bytes", "total_bytes", "events"}
        assert message["data"]["total_bytes"] == corpus["bytes"]
    done = [message["data"]["done_bytes"] for message in progress]
    assert done == sorted(done)
    last = progress[-1]["data"]
    assert last["done_bytes"] == last["total_bytes"] == corpus["bytes"]
    assert (updated["type"], updated["topic"]) == ("event", "usage")
    assert updated["data"]["source"] == "claude"
    assert last["events"] == updated["data"]["found"] > 0
    assert f"Found {last['events']} session entries from JSONL files" in reply["data"]


def test_a_metered_response_is_a_usage_updated_event(daemon):
    port = start_proxy(daemon, "metered")["port"]
    with subscribe_usage(daemon) as ws:
        status, _, body = send(port, "/v1/messages", {"model": "claude-sonnet-4-5", "stream": True},
                               {"x-api-key": placeholder(daemon, "metered")})
        assert status == 200 and body.rstrip().endswith(b'data: {"type":"message_stop"}')
        # The proxy folds its inbox every 0.5 s and the front reads new rows every 0.5 s.
        event = ws.wait_for(lambda message: message.get("event") == "usage_updated", timeout=5)
    assert set(event) == {"type", "topic", "event", "data"}
    assert (event["type"], event["topic"]) == ("event", "usage")
    data = event["data"]
    assert {name: data[name] for name in ("source", "profile", "model", "tokens")} == \
        {"source": "proxy", "profile": "metered", "model": "claude-sonnet-4-5", "tokens": USAGE}
    _, report = daemon.get("/api/usage?period=today&profile=metered")
    assert report["data"]["total_tokens"] == USAGE
    assert data["cost"] == pytest.approx(report["data"]["total_cost"]["total_cost"], rel=1e-9)
    assert data["cost"] > 0
