// Command send sends one message through the mail gateway, follows it with GetMessage until it leaves the queue, and
// prints a refusal's google.rpc details (ErrorInfo, BadRequest, RetryInfo) as any Go caller can read them.
//
//	go run . -addr 127.0.0.1:50051 -to ada@example.org -subject Hello -text "First mail"
//
// A gateway that requires tokens gets MAILGW_CLIENT_TOKEN as `authorization: Bearer …`, as `mailgw send` sends it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
	"unicode"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	mailgatewayv1 "example.com/mailgateway/clients/go/mailgateway/v1"
)

func main() {
	addr := flag.String("addr", envOr("MAILGW_GRPC_ADDR", "127.0.0.1:50051"), "the gateway's host:port")
	to := flag.String("to", "", "the recipient")
	subject := flag.String("subject", "", "the subject line")
	text := flag.String("text", "", "the plain-text body")
	html := flag.String("html", "", "the HTML body")
	requestID := flag.String("request-id", "", "an idempotency key")
	flag.Parse()

	// WithInsecure: plaintext, for a gateway on loopback. Debian 12's grpc-go (1.33) predates
	// insecure.NewCredentials(), which a current grpc-go prefers, with grpc.NewClient.
	conn, err := grpc.Dial(*addr, grpc.WithInsecure())
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(2)
	}
	defer conn.Close()
	gateway := mailgatewayv1.NewMailGatewayServiceClient(conn)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if token := os.Getenv("MAILGW_CLIENT_TOKEN"); token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}

	sent, err := gateway.SendEmail(ctx, &mailgatewayv1.SendEmailRequest{
		To: *to, Subject: *subject, TextBody: *text, HtmlBody: *html, RequestId: *requestID,
	})
	if err != nil {
		printError(err)
		os.Exit(1)
	}
	fmt.Printf("accepted: message_id=%s contact_id=%s\n", sent.MessageId, sent.ContactId)

	message, err := gateway.GetMessage(ctx, &mailgatewayv1.GetMessageRequest{MessageId: sent.MessageId})
	for polls := 0; err == nil && inFlight(message.State) && polls < 100; polls++ {
		time.Sleep(100 * time.Millisecond)
		message, err = gateway.GetMessage(ctx, &mailgatewayv1.GetMessageRequest{MessageId: sent.MessageId})
	}
	if err != nil {
		printError(err)
		os.Exit(1)
	}
	state := strings.TrimPrefix(message.State.String(), "MESSAGE_STATE_")
	fmt.Printf("message: state=%s ses_message_id=%s attempts=%d\n", state, message.SesMessageId, message.Attempts)
}

func inFlight(state mailgatewayv1.MessageState) bool {
	return state == mailgatewayv1.MessageState_MESSAGE_STATE_QUEUED ||
		state == mailgatewayv1.MessageState_MESSAGE_STATE_SENDING
}

// printError prints the status and its details: grpc-status-details-bin is a google.rpc.Status whose details are
// Any messages, which status.Details() decodes into genproto's errdetails types.
func printError(err error) {
	st := status.Convert(err)
	fmt.Fprintf(os.Stderr, "error: %s: %s\n", codeName(st.Code().String()), st.Message())
	for _, detail := range st.Details() {
		switch detail := detail.(type) {
		case *errdetails.ErrorInfo:
			keys := make([]string, 0, len(detail.Metadata))
			for key := range detail.Metadata {
				keys = append(keys, key)
			}
			sort.Strings(keys)
			line := fmt.Sprintf("  ErrorInfo: reason=%s domain=%s", detail.Reason, detail.Domain)
			for _, key := range keys {
				line += fmt.Sprintf(" %s=%s", key, detail.Metadata[key])
			}
			fmt.Fprintln(os.Stderr, line)
		case *errdetails.BadRequest:
			for _, violation := range detail.FieldViolations {
				fmt.Fprintf(os.Stderr, "  BadRequest: %s: %s\n", violation.Field, violation.Description)
			}
		case *errdetails.RetryInfo:
			delay := time.Duration(detail.RetryDelay.GetSeconds())*time.Second + time.Duration(detail.RetryDelay.GetNanos())
			fmt.Fprintf(os.Stderr, "  RetryInfo: retry after %s\n", delay)
		}
	}
}

// codeName turns grpc-go's "FailedPrecondition" into gRPC's FAILED_PRECONDITION, the gateway's documented names.
func codeName(camel string) string {
	var name strings.Builder
	for i, r := range camel {
		if i > 0 && unicode.IsUpper(r) {
			name.WriteByte('_')
		}
		name.WriteRune(unicode.ToUpper(r))
	}
	return name.String()
}

func envOr(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}
