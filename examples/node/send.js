#!/usr/bin/env node
// Sends one message through the mail gateway, follows it with GetMessage until it leaves the queue, and prints a
// refusal's google.rpc details (ErrorInfo, BadRequest, RetryInfo) as any Node caller can read them.
//
//   node examples/node/send.js --addr 127.0.0.1:50051 --to ada@example.org --subject Hello --text "First mail"
//
// A gateway that requires tokens gets MAILGW_CLIENT_TOKEN as `authorization: Bearer …`, as `mailgw send` sends it.
// --help prints the flags; a wrong or missing flag is one line on stderr and exit code 2.
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { parseArgs } from "node:util";

import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema } from "@mail-gateway/client/google/rpc/error_details_pb";
import { MailGatewayService, MessageState } from "@mail-gateway/client/mailgateway/v1/mail_gateway_pb";

const IN_FLIGHT = [MessageState.QUEUED, MessageState.SENDING];

const USAGE = `Usage: node send.js --to ADDRESS --subject TEXT [--text TEXT] [--html HTML] [--addr HOST:PORT] [--request-id KEY] [--attach PATH[:TYPE]]...
Sends one message through the mail gateway, follows it with GetMessage, prints a refusal's details.

  --addr HOST:PORT    the gateway (default $MAILGW_GRPC_ADDR, else 127.0.0.1:50051)
  --to ADDRESS        the recipient (required)
  --subject TEXT      the subject line (required)
  --text TEXT         the plain-text body
  --html HTML         the HTML body
  --request-id KEY    an idempotency key
  --attach PATH[:TYPE]  a file to attach, with its MIME type (default application/octet-stream); repeat for more
  -h, --help          this text

Environment:
  MAILGW_GRPC_ADDR     the gateway's host:port when --addr is not given
  MAILGW_CLIENT_TOKEN  sent as \`authorization: Bearer …\` to a gateway that requires tokens`;

const flags = parseFlags();

const token = process.env.MAILGW_CLIENT_TOKEN;
const withToken = (next) => (req) => {
  req.header.set("authorization", `Bearer ${token}`);
  return next(req);
};
const transport = createGrpcTransport({ baseUrl: `http://${flags.addr}`, interceptors: token ? [withToken] : [] });
const gateway = createClient(MailGatewayService, transport);

try {
  const sent = await gateway.sendEmail(
    {
      to: flags.to,
      subject: flags.subject,
      textBody: flags.text,
      htmlBody: flags.html,
      requestId: flags["request-id"],
      attachments: flags.attach.map(attachment),
    },
    { timeoutMs: 10_000 },
  );
  console.log(`accepted: message_id=${sent.messageId} contact_id=${sent.contactId}`);

  let message = await gateway.getMessage({ messageId: sent.messageId }, { timeoutMs: 10_000 });
  for (let polls = 0; IN_FLIGHT.includes(message.state) && polls < 100; polls++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    message = await gateway.getMessage({ messageId: sent.messageId }, { timeoutMs: 10_000 });
  }
  console.log(`message: state=${MessageState[message.state]} ses_message_id=${message.sesMessageId} attempts=${message.attempts}`);
} catch (thrown) {
  printError(ConnectError.from(thrown));
  process.exitCode = 1;
}

// parseFlags exits 0 after the usage for --help, and 2 with one line for a flag it does not know, a value it lacks or
// a required flag left out: parseArgs' own answer to the first two is a stack trace.
function parseFlags() {
  let parsed;
  try {
    parsed = parseArgs({
      options: {
        addr: { type: "string", default: process.env.MAILGW_GRPC_ADDR || "127.0.0.1:50051" },
        to: { type: "string", default: "" },
        subject: { type: "string", default: "" },
        text: { type: "string", default: "" },
        html: { type: "string", default: "" },
        "request-id": { type: "string", default: "" },
        attach: { type: "string", multiple: true, default: [] },
        help: { type: "boolean", short: "h", default: false },
      },
    }).values;
  } catch (err) {
    if (!err.code?.startsWith("ERR_PARSE_ARGS_")) throw err;
    // Node's message goes on with advice about positional arguments after its first sentence.
    usageError(err.message.split(". ")[0]);
  }
  if (parsed.help) {
    console.log(USAGE);
    process.exit(0);
  }
  if (!parsed.to || !parsed.subject) usageError("--to and --subject are required");
  return parsed;
}

function usageError(problem) {
  console.error(`send.js: ${problem}; --help lists the flags`);
  process.exit(2);
}

function printError(err) {
  // Connect names codes in CamelCase; the gateway's documentation uses gRPC's names (FAILED_PRECONDITION).
  const code = Code[err.code].replace(/(?<=.)([A-Z])/g, "_$1").toUpperCase();
  console.error(`error: ${code}: ${err.rawMessage}`);
  // grpc-status-details-bin is a google.rpc.Status; its details are Any messages, decoded here by type.
  for (const info of err.findDetails(ErrorInfoSchema)) {
    const metadata = Object.entries(info.metadata).sort().map(([key, value]) => ` ${key}=${value}`);
    console.error(`  ErrorInfo: reason=${info.reason} domain=${info.domain}${metadata.join("")}`);
  }
  for (const badRequest of err.findDetails(BadRequestSchema)) {
    for (const violation of badRequest.fieldViolations) {
      console.error(`  BadRequest: ${violation.field}: ${violation.description}`);
    }
  }
  for (const retry of err.findDetails(RetryInfoSchema)) {
    const delay = Number(retry.retryDelay?.seconds ?? 0n) + (retry.retryDelay?.nanos ?? 0) / 1e9;
    console.error(`  RetryInfo: retry after ${delay}s`);
  }
}

// attachment reads PATH[:TYPE] into an Attachment: the file's name without its directory, its bytes, its type.
function attachment(spec) {
  const colon = spec.lastIndexOf(":");
  const typed = colon > 0 && spec.slice(colon + 1).includes("/");
  const path = typed ? spec.slice(0, colon) : spec;
  const contentType = typed ? spec.slice(colon + 1) : "application/octet-stream";
  return { filename: basename(path), contentType, content: readFileSync(path) };
}
