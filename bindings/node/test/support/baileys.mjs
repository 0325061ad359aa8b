// A fake Baileys socket: the parts of `makeWASocket`'s result that heirline/baileys uses,
// behaving as Baileys 6.x does (lib/Socket/socket.js):
// * `ev` is an emitter with on/off; events carry Baileys' shapes.
// * on login ("CB:success") it emits `creds.update` with `me` (and the LID), then
//   `connection.update` `{ connection: "open" }`; `user` is `authState.creds.me`.
// * `end(error)` closes once: `connection.update` `{ connection: "close", lastDisconnect:
//   { error, date } }`, where error is a Boom whose `output.statusCode` is the status.
// * `sendMessage` throws Boom 428 "Connection Closed" when the socket is not open.
// * `ws` is its websocket, which emits "frame" for every frame Baileys decodes
//   (lib/Socket/socket.js: `ws.emit('frame', frame)` in onMessageReceived).
import { EventEmitter } from "node:events";

/** A Boom as Baileys throws and passes around. */
export function fakeBoom(message, statusCode) {
  return Object.assign(new Error(message), { isBoom: true, output: { statusCode, payload: { message } } });
}

export class FakeBaileysSocket {
  /** @param {{account: string, generation: number, attempt: number}} fields makeSocket's */
  constructor(fields) {
    this.fields = fields;
    this.ev = new EventEmitter();
    this.ws = new EventEmitter();
    /** When set, `end` records the close but emits it only when `emitClose()` is called. */
    this.deferClose = false;
    /** @type {Error | undefined} */
    this._closeError = undefined;
    this.authState = { creds: {} };
    // Baileys applies every creds.update to its auth state itself.
    this.ev.on("creds.update", (update) => Object.assign(this.authState.creds, update));
    this.isOpen = false;
    this.closed = false;
    /** @type {Array<{jid: string, content: object, options: object}>} */
    this.sent = [];
    /** @type {Array<Error | undefined>} */
    this.ended = [];
    /** Replaces the default "accept and resolve" behaviour of sendMessage when set. */
    this.onSend = null;
  }

  get user() {
    return this.authState.creds.me;
  }

  /** The server accepted the login: Baileys' "CB:success". */
  login(me) {
    this.ev.emit("creds.update", { me: { ...me } });
    this.isOpen = true;
    this.ev.emit("connection.update", { connection: "open" });
  }

  /** The server or network closed the socket with a status (Baileys ends itself). */
  drop(statusCode) {
    this.end(fakeBoom("Connection Lost", statusCode));
  }

  end(error) {
    this.ended.push(error);
    if (this.closed) return; // Baileys: "connection already closed"
    this.closed = true;
    this.isOpen = false;
    this._closeError = error;
    if (!this.deferClose) this.emitClose();
  }

  /** The close reaches the listeners (late, when `deferClose` held it back). */
  emitClose() {
    const error = this._closeError;
    this.ev.emit("connection.update", { connection: "close", lastDisconnect: { error, date: new Date() } });
  }

  /** The websocket decoded a frame (a keepalive answer, a receipt, a message, ...). */
  frame(node = { tag: "iq", attrs: { type: "result" } }) {
    this.ws.emit("frame", node);
  }

  async sendMessage(jid, content, options) {
    if (!this.isOpen) throw fakeBoom("Connection Closed", 428);
    this.sent.push({ jid, content, options });
    if (this.onSend) return this.onSend(jid, content, options);
    return { key: { remoteJid: jid, fromMe: true, id: options?.messageId } };
  }

  /** New messages arrive: `messages.upsert` of type notify. */
  receive(...messages) {
    this.ev.emit("messages.upsert", { messages, type: "notify" });
  }
}

/** A WAMessage someone sent to `chat`, as Baileys delivers it. */
export function inbound(chat, id, text) {
  return {
    key: { remoteJid: chat, fromMe: false, id },
    message: { conversation: text },
    messageTimestamp: 1764000000,
    pushName: "Someone",
  };
}

/** Wait until `check()` is truthy, polling every 5 ms for at most `ms`; returns its value. */
export async function until(check, ms = 5000, what = "condition") {
  const end = Date.now() + ms;
  for (;;) {
    const value = check();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
