"""A stand-in OPC UA server application for live-proof tests.

    python -m tests.apps.reloading_server STORE LAYOUT APP_URI PORT_FILE

Serves on 127.0.0.1 (ephemeral port, written to PORT_FILE) with the store's own certificate, validates
clients against the store like a real stack (at OpenSecureChannel), and reloads its certificate from the
store on SIGHUP, as a deploy hook would ask a real server to.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from datetime import datetime, timezone
from pathlib import Path

import pki
from certmgr.opcua.channel import LoopbackServer
from certmgr.opcua.identities import identity_from_store


def now() -> datetime:
    return datetime.now(timezone.utc)


async def main(store_dir: str, layout: str, app_uri: str, port_file: str) -> None:
    logging.basicConfig(level=logging.ERROR)
    store = pki.ApplicationStore(store_dir, layout)
    server = await LoopbackServer().start(identity_from_store(store, app_uri, peer_role="client", clock=now))
    reloads = asyncio.Queue()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, reloads.put_nowait, "reload")
    loop.add_signal_handler(signal.SIGTERM, reloads.put_nowait, "stop")
    Path(port_file).write_text(str(server.port))
    while (await reloads.get()) == "reload":
        await server.use(identity_from_store(store, app_uri, peer_role="client", clock=now))
        print("reloaded", flush=True)
    await server.stop()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
