#!/usr/bin/env node
// Sends one message through the mail gateway, follows it with GetMessage until it leaves the queue, and prints a
// refusal's google.rpc details (ErrorInfo, BadRequest, RetryInfo) as any Node caller can read them.
//
//   node examples/node/send.js --addr 127.0.0.1:50051 --to ada@example.org --subject Hello --text "First mail"
//
// A gateway that requires tokens gets MAILGW_CLIENT_TOKEN as `authorization: Bearer …`, as `mailgw send` sends it.
import { parseArgs } from "node:util";

import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema } from "@mail-gateway/client/google/rpc/error_details_pb";
import { MailGatewayService, MessageState } from "@mail-gateway/client/mailgateway/v1/mail_gateway_pb";

const IN_FLIGHT = [MessageState.QUEUED, MessageState.SENDING];

const { values: flags } = parseArgs({
  options: {
    addr: { type: "string", default: process.env.MAILGW_GRPC_ADDR ?? "127.0.0.1:50051" },
    to: { type: "string" },
    subject: { type: "string" },
    text: { type: "string", default: "" },
    html: { type: "string", default: "" },
    "request-id": { type: "string", default: "" },
  },
});

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
