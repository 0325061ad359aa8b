// An echo bot on Baileys whose connection decisions are heirline's: when to reconnect,
// when to back off, which socket may send a reply captured before a restart, and when a
// socket that shows no traffic (no frame for 5 minutes) is closed (499) and replaced.
// Ctrl-C shuts down: every reply still open ends with an outcome, printed.
//
// In a project with Baileys and this package installed (and the Python heirline on PATH):
//   npm install baileys /path/to/heirline/bindings/node
//   node node_modules/heirline/examples/baileys.mjs main auth/main     # account, auth dir
// Scan the QR code it prints with WhatsApp (Linked devices), then message the account.
import { randomInt } from "node:crypto";
import { pathToFileURL } from "node:url";
import { HeirlineEngine } from "heirline";
import { attachBaileys } from "heirline/baileys";

/** The text of a Baileys message (plain or extended text). */
export function textOf(message) {
  return message.message?.conversation ?? message.message?.extendedTextMessage?.text ?? "";
}

/**
 * Start the bot: a heirline engine, and a gateway that makes one Baileys socket per
 * `open_socket` from the saved auth state and answers every inbound text.
 * `makeWASocket` and `useMultiFileAuthState` are Baileys' (passed in so tests can fake them).
 */
export async function runEchoBot({
  makeWASocket,
  useMultiFileAuthState,
  account = "main",
  authDir = `auth/${account}`,
  engineOptions = {},
  log = console.log,
}) {
  // A random seed: many gateways restarting at once should not retry in step.
  const engine = await HeirlineEngine.start({ seed: randomInt(2 ** 31), ...engineOptions });
  const gateway = attachBaileys(engine, {
    makeSocket: async () => {
      const { state, saveCreds } = await useMultiFileAuthState(authDir);
      const sock = makeWASocket({ auth: state });
      sock.ev.on("creds.update", saveCreds);
      sock.ev.on("connection.update", ({ qr }) => {
        if (qr) log(`scan this QR code with WhatsApp: ${qr}`);
      });
      return sock;
    },
    onMessage: (message, reply) => reply.ready(`echo: ${textOf(message)}`),
    onEffect: (effect) => {
      if (effect.type === "log") log(`[heirline ${effect.level}] ${effect.message}`);
      if (effect.type === "reply_failed") log(`[heirline] reply ${effect.reply_id} ${effect.outcome}: ${effect.reason}`);
    },
  });
  await gateway.start(account);
  return {
    engine,
    gateway,
    /** Shut down: every reply still open ends (logged by onEffect), sockets close, the engine exits. */
    async close() {
      await gateway.close();
      return engine.close();
    },
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const baileys = await import("baileys");
  const bot = await runEchoBot({
    makeWASocket: baileys.makeWASocket ?? baileys.default,
    useMultiFileAuthState: baileys.useMultiFileAuthState,
    account: process.argv[2],
    authDir: process.argv[3],
  });
  process.once("SIGINT", () => {
    bot.close().then(() => process.exit(130));
  });
}
