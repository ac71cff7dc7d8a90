"""Terminal sessions: REST routes, the ``/ws/terminal/{id}`` relay and the manager of term workers."""
