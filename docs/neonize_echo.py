"""heirline on neonize: an echo bot whose replies survive reconnects.

pip install 'heirline[neonize]', then: python docs/neonize_echo.py
The first run prints a QR code: scan it in WhatsApp (Settings > Linked devices).
Ctrl-C stops it; replies still open then end as a shutdown ends them.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal

from neonize.aioze.client import NewAClient

from heirline.adapters.neonize import InboundMessage, ReplyRequest, neonize_gateway, read_receipt
from heirline.core.events import Start

ACCOUNT = "main"


def on_message(message: InboundMessage) -> list[ReplyRequest] | None:
    """Mark each message read and echo its text; leave our own and empty ones alone."""
    if message.from_me or not message.text:
        return None
    return [read_receipt(message), ReplyRequest(payload=f"you said: {message.text}")]


async def serve(client: NewAClient, stop: asyncio.Event) -> None:
    """Run the engine on ``client`` until ``stop`` is set."""
    gateway = neonize_gateway({ACCOUNT: client}, random=random.random, on_message=on_message)
    async with gateway:
        gateway.feed(Start(account=ACCOUNT))
        await stop.wait()


async def main() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await serve(NewAClient("heirline-echo.sqlite3"), stop)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(main())
