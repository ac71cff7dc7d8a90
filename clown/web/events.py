"""In-process publish/subscribe for daemon events (``/ws`` topics) inside the web front.

Producers call ``bus.publish(topic, event, data)``; the ``/ws`` handler subscribes a
callback per client. Callbacks run on the IOLoop and must not block.
"""

import logging
from collections import defaultdict
from typing import Callable

log = logging.getLogger(__name__)

TOPICS = ("profiles", "proxy", "usage", "workers", "sessions")


class EventBus:
    def __init__(self):
        self._subscribers: dict[str, set[Callable]] = defaultdict(set)

    def subscribe(self, topic: str, callback: Callable[[dict], None]) -> None:
        self._subscribers[topic].add(callback)

    def unsubscribe(self, topic: str, callback: Callable[[dict], None]) -> None:
        self._subscribers[topic].discard(callback)

    def publish(self, topic: str, event: str, data: dict) -> None:
        message = {"type": "event", "topic": topic, "event": event, "data": data}
        for callback in list(self._subscribers.get(topic, ())):
            try:
                callback(message)
            except Exception:
                log.exception("event subscriber failed on %s/%s", topic, event)
