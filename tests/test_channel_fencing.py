"""The loopback channel server fences on the generation, as a storage service would."""

from __future__ import annotations

import asyncio
from typing import Any

from heirline.adapters import frames
from heirline.adapters.channel import ChannelServer, Fenced
from heirline.adapters.jsonio import dumps, loads

PN = "15550001111@s.whatsapp.net"


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> Client:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def ask(self, frame: dict[str, Any]) -> dict[str, Any]:
        self.writer.write(dumps(frame) + b"\n")
        await self.writer.drain()
        answer = loads(await asyncio.wait_for(self.reader.readline(), 5))
        assert isinstance(answer, dict)
        return answer

    def send(self, mid: str, generation: int | None = None) -> dict[str, Any]:
        frame: dict[str, Any] = {"t": "send", "id": mid, "chat": "c@s.whatsapp.net"}
        if generation is not None:
            frame["generation"] = generation
        return frame

    async def close(self) -> None:
        self.writer.close()


def run(fencing: bool, body: Any) -> Any:
    async def main() -> Any:
        async with ChannelServer(fencing=fencing) as server:
            server.add_account("a", pn=PN)
            return await asyncio.wait_for(body(server), 20)

    return asyncio.run(main())


def test_a_send_with_a_token_older_than_the_newest_seen_is_refused() -> None:
    async def body(server: ChannelServer) -> None:
        old = await Client.connect(server.port)
        assert (await old.ask({"t": "login", "account": "a", "generation": 1}))["t"] == "ready"
        assert await old.ask(old.send("m1")) == {"t": "ack", "id": "m1"}
        new = await Client.connect(server.port)
        assert (await new.ask({"t": "login", "account": "a", "generation": 2}))["t"] == "ready"
        # the old connection's token (its login generation) is now stale
        answer = await old.ask(old.send("m2"))
        assert answer == {
            "t": "error",
            "id": "m2",
            "message": "stale fencing token: generation 1 < newest 2",
        }
        # a send carrying its own token is judged by that token
        assert (await new.ask(new.send("m3", generation=5)))["t"] == "ack"
        assert (await new.ask(new.send("m4", generation=2)))["t"] == "error"
        assert (await new.ask(new.send("m5")))["t"] == "error"  # login token 2 < 5
        assert server.ledger.received(PN) == ("m1", "m3")
        assert server.fenced == [
            Fenced("a", 1, 2, "m2"),
            Fenced("a", 2, 5, "m4"),
            Fenced("a", 2, 5, "m5"),
        ]
        assert server.sends_by_token == {("a", 1): 1, ("a", 5): 1}
        # a login with a stale token is refused too: the connection closes with 440
        late = await Client.connect(server.port)
        refused = await late.ask({"t": "login", "account": "a", "generation": 4})
        assert refused["t"] == "error"
        assert "stale fencing token: generation 4 < newest 5" in refused["message"]
        closed = loads(await asyncio.wait_for(late.reader.readline(), 5))
        assert closed == {"t": "closed", "status": 440}
        assert server.fenced[-1] == Fenced("a", 4, 5, None)
        assert (await new.ask({"t": "send", "id": "m6", "chat": "c", "generation": "x"}))[
            "message"
        ] == "send: 'generation' must be a non-negative integer or absent"
        for client in (old, new, late):
            await client.close()

    run(True, body)


def test_without_fencing_every_token_is_accepted() -> None:
    async def body(server: ChannelServer) -> None:
        old = await Client.connect(server.port)
        await old.ask({"t": "login", "account": "a", "generation": 1})
        new = await Client.connect(server.port)
        await new.ask({"t": "login", "account": "a", "generation": 2})
        assert (await old.ask(old.send("m1")))["t"] == "ack"
        assert server.fenced == []
        assert server.ledger.received(PN) == ("m1",)
        await old.close()
        await new.close()

    run(False, body)


def test_a_send_frame_carries_its_token_only_when_it_has_one() -> None:
    bare = frames.Send("m1", "c", "text", "hi")
    fenced = frames.Send("m1", "c", "text", "hi", 7)
    assert b"generation" not in frames.encode(bare)  # the frame as it was before fencing
    written = loads(frames.encode(fenced))
    assert isinstance(written, dict)
    assert written["generation"] == 7
    for frame in (bare, fenced):
        assert frames.decode_client(loads(frames.encode(frame))) == frame
