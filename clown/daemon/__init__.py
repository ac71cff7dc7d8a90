"""``clownd``: the daemon as a whole (supervisord and what it runs), and its status."""
