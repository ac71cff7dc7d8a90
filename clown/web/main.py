"""The ``web`` program: ``python -m clown.web.main --home DIR`` (started by supervisord)."""

import argparse
import asyncio
import gc
import logging
import signal
import sys

import tornado.httpserver

from clown.config import read_resolved
from clown.home import Home
from clown.procs import set_parent_death_signal
from clown.web.app import make_app
from clown.web.context import Context

log = logging.getLogger("clown.web")

# Bodies are capped per handler (413 in the envelope); this only bounds what Tornado accepts.
SERVER_BODY_LIMIT = 64 << 20


async def serve(home: Home) -> None:
    config = read_resolved(home.resolved_config)
    ctx = Context(home, config)
    app = make_app(ctx)
    server = tornado.httpserver.HTTPServer(app, max_body_size=SERVER_BODY_LIMIT, xheaders=False)
    server.listen(config.server.port, address=config.server.host.strip("[]"))
    log.info("listening on %s:%s", config.server.host, config.server.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    for start in ctx.startup:
        await start()
    # What start-up made lives as long as the process: keep it out of the collector's
    # full passes, which otherwise walk it all (a millisecond pause in a keystroke's path).
    gc.freeze()
    await stop.wait()
    server.stop()
    ctx.close()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="clown-web")
    parser.add_argument("--home", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    set_parent_death_signal(signal.SIGTERM)
    asyncio.run(serve(Home(args.home)))


if __name__ == "__main__":
    main()
