"""The Tornado front: REST, WebSockets and the web UI on one listener."""
