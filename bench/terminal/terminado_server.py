"""A minimal terminado app for the terminal benchmark (run by run.py as a subprocess).

    python bench/terminal/terminado_server.py PORT COMMANDS_JSON

COMMANDS_JSON maps a name to an argv. ``/unique/<name>`` starts a new terminal running that
argv for each WebSocket (UniqueTermManager); ``/named/<name>/<term>`` shares one terminal
between every client of ``<term>`` (NamedTermManager). Prints "READY" once listening.
"""

import json
import sys

import tornado.ioloop
import tornado.web
from terminado import NamedTermManager, TermSocket, UniqueTermManager


def main() -> None:
    port, commands = int(sys.argv[1]), json.loads(sys.argv[2])
    handlers = []
    for name, argv in commands.items():
        handlers.append((rf"/unique/{name}", TermSocket, {"term_manager": UniqueTermManager(shell_command=argv)}))
        handlers.append((rf"/named/{name}/(\w+)", TermSocket,
                         {"term_manager": NamedTermManager(shell_command=argv, max_terminals=1000)}))
    app = tornado.web.Application(handlers)
    app.listen(port, "127.0.0.1")
    print("READY", flush=True)
    tornado.ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
