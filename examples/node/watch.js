#!/usr/bin/env node
// Follows what happens to this caller's mail (WatchEvents) and resumes, after a restart or a lost connection, right
// after the last event it handled: the cursor of each handled event is stored in a file, and read back at start.
//
//   node examples/node/watch.js --addr 127.0.0.1:50051 --cursor-file events.cursor
//
// Delivery is at-least-once: an event handled but not yet stored may come again after a crash, never one skipped.
// --until-caught-up stops when the stream has caught up with the gateway's log (the first keep-alive);
// MAILGW_CLIENT_TOKEN names the caller, as for send.js. A wrong flag is one line on stderr and exit code 2.
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";

import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ErrorInfoSchema } from "@mail-gateway/client/google/rpc/error_details_pb";
import { EventType, MailGatewayService, MessageState } from "@mail-gateway/client/mailgateway/v1/mail_gateway_pb";

const USAGE = `Usage: node watch.js --cursor-file PATH [--addr HOST:PORT] [--until-caught-up]
Prints this caller's events from the gateway, resuming after the cursor stored in PATH.

  --addr HOST:PORT    the gateway (default $MAILGW_GRPC_ADDR, else 127.0.0.1:50051)
  --cursor-file PATH  where the last handled event's cursor is kept (required; absent: start from now)
  --until-caught-up   stop once the stream has caught up with the log
  -h, --help          this text`;

let flags;
try {
  flags = parseArgs({
    options: {
      addr: { type: "string", default: process.env.MAILGW_GRPC_ADDR || "127.0.0.1:50051" },
      "cursor-file": { type: "string", default: "" },
      "until-caught-up": { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  }).values;
} catch (err) {
  if (!err.code?.startsWith("ERR_PARSE_ARGS_")) throw err;
  usageError(err.message.split(". ")[0]);
}
if (flags.help) {
  console.log(USAGE);
  process.exit(0);
}
if (!flags["cursor-file"]) usageError("--cursor-file is required");

const cursorFile = flags["cursor-file"];
const token = process.env.MAILGW_CLIENT_TOKEN;
const withToken = (next) => (req) => {
  req.header.set("authorization", `Bearer ${token}`);
  return next(req);
};
const transport = createGrpcTransport({ baseUrl: `http://${flags.addr}`, interceptors: token ? [withToken] : [] });
const gateway = createClient(MailGatewayService, transport);
const cursor = existsSync(cursorFile) ? readFileSync(cursorFile, "utf8").trim() : "";

try {
  for await (const event of gateway.watchEvents({ cursor })) {
    if (event.type === EventType.UNSPECIFIED) {
      // A keep-alive: its cursor is past everything the stream looked at, so storing it makes a restart cheap.
      store(event.cursor);
      if (flags["until-caught-up"]) break;
      continue;
    }
    handle(event);
    store(event.cursor); // after handling: a crash in between means this event comes again, never that it is lost
  }
} catch (thrown) {
  const err = ConnectError.from(thrown);
  const code = Code[err.code].replace(/(?<=.)([A-Z])/g, "_$1").toUpperCase();
  console.error(`error: ${code}: ${err.rawMessage}`);
  for (const info of err.findDetails(ErrorInfoSchema)) {
    // CURSOR_EXPIRED: the events after the stored cursor were purged; oldestCursor is where a complete watch starts.
    const metadata = Object.entries(info.metadata).sort().map(([key, value]) => ` ${key}=${value}`);
    console.error(`  ErrorInfo: reason=${info.reason}${metadata.join("")}`);
  }
  process.exitCode = 1;
}
process.exit(); // the transport keeps its HTTP/2 session open for more calls, which would keep Node running

function handle(event) {
  const what = event.messageId ? `message=${event.messageId}` : `contact=${event.contactId}`;
  const state = event.previousState ? ` ${MessageState[event.previousState]}->${MessageState[event.state]}` : "";
  console.log(`${EventType[event.type]} ${what}${state}`);
}

function store(value) {
  writeFileSync(`${cursorFile}.tmp`, value);
  renameSync(`${cursorFile}.tmp`, cursorFile); // atomic: a crash leaves the old cursor or the new one
}

function usageError(problem) {
  console.error(`watch.js: ${problem}; --help lists the flags`);
  process.exit(2);
}
