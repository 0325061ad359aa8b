// examples/baileys.mjs, with Baileys' makeWASocket and useMultiFileAuthState faked.
import assert from "node:assert/strict";
import { runEchoBot, textOf } from "../examples/baileys.mjs";
import { COMMAND, test } from "./support/helpers.mjs";
import { FakeBaileysSocket, inbound, until } from "./support/baileys.mjs";

const me = { id: "4915123456789:3@s.whatsapp.net", lid: "123456789012345:3@lid" };

test("textOf reads plain and extended text", () => {
  assert.equal(textOf(inbound("1@s.whatsapp.net", "A", "hi")), "hi");
  assert.equal(textOf({ key: {}, message: { extendedTextMessage: { text: "link" } } }), "link");
  assert.equal(textOf({ key: {}, message: { imageMessage: {} } }), "");
});

test("the echo bot answers a message through the socket heirline chose", async () => {
  const sockets = [];
  const authDirs = [];
  const saved = [];
  const lines = [];
  const bot = await runEchoBot({
    makeWASocket: ({ auth }) => {
      assert.equal(auth.tag, "state");
      const sock = new FakeBaileysSocket({ n: sockets.length });
      sockets.push(sock);
      return sock;
    },
    useMultiFileAuthState: async (dir) => {
      authDirs.push(dir);
      return { state: { tag: "state" }, saveCreds: (update) => saved.push(update) };
    },
    account: "bot",
    engineOptions: { command: COMMAND, config: { health_timer: false } },
    log: (line) => lines.push(line),
  });
  try {
    assert.deepEqual(authDirs, ["auth/bot"]);
    sockets[0].ev.emit("connection.update", { qr: "2@qr-code" });
    sockets[0].login(me);
    assert.deepEqual(saved, [{ me }]); // the bot saves Baileys' creds as Baileys asks
    sockets[0].receive(inbound("4917000000001@s.whatsapp.net", "3EB0B1", "ping"));
    const [sent] = await until(() => sockets[0].sent.length && sockets[0].sent);
    assert.equal(sent.jid, "4917000000001@s.whatsapp.net");
    assert.deepEqual(sent.content, { text: "echo: ping" });
    assert.match(sent.options.messageId, /^3EB0[0-9A-F]{36}$/);
    await until(() => lines.some((l) => l.includes("reply bot/3EB0B1")), 5000, "a log of the reply");
    assert.ok(lines.includes("scan this QR code with WhatsApp: 2@qr-code"));
    assert.ok(lines.includes("[heirline info] Web connection open."), lines.join("\n"));
  } finally {
    const exit = await bot.close();
    assert.equal(exit.code, 0);
  }
  // Closing the bot shut the engine down through the gateway, which logged it.
  assert.ok(lines.includes("[heirline info] Stopped: gateway closed."), lines.join("\n"));
});
