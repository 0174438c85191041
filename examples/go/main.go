// Command send sends one message through the mail gateway, follows it with GetMessage until it leaves the queue, and
// prints a refusal's google.rpc details (ErrorInfo, BadRequest, RetryInfo) as any Go caller can read them.
//
//	examples/go/run.sh -addr 127.0.0.1:50051 -to ada@example.org -subject Hello -text "First mail"
//
// A gateway that requires tokens gets MAILGW_CLIENT_TOKEN as `authorization: Bearer …`, as `mailgw send` sends it.
// -help prints the flags; a wrong or missing flag is one line on stderr and exit code 2.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"io/ioutil"
	"os"
	"path/filepath"
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
	flags := flag.NewFlagSet("send", flag.ContinueOnError)
	addr := flags.String("addr", envOr("MAILGW_GRPC_ADDR", "127.0.0.1:50051"), "the gateway's host:port")
	to := flags.String("to", "", "the recipient (required)")
	subject := flags.String("subject", "", "the subject line (required)")
	text := flags.String("text", "", "the plain-text body")
	html := flags.String("html", "", "the HTML body")
	requestID := flags.String("request-id", "", "an idempotency key")
	var attach attachFlags
	flags.Var(&attach, "attach", "a file to attach as PATH[:TYPE] (default type application/octet-stream); repeat for more")
	parseFlags(flags, os.Args[1:])
	if *to == "" || *subject == "" {
		usageError("-to and -subject are required")
	}

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
		To: *to, Subject: *subject, TextBody: *text, HtmlBody: *html, RequestId: *requestID, Attachments: attach,
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

// parseFlags exits 0 after the usage for -h or -help, and 2 with one line for a flag it does not know or a value it
// cannot read: the flag package's own answer to those is the error followed by the whole usage.
func parseFlags(flags *flag.FlagSet, args []string) {
	flags.SetOutput(io.Discard)
	err := flags.Parse(args)
	if err == flag.ErrHelp {
		flags.SetOutput(os.Stdout)
		fmt.Println("Usage: send -to ADDRESS -subject TEXT [-text TEXT] [-html HTML] [-addr HOST:PORT] [-request-id KEY]")
		fmt.Println("Sends one message through the mail gateway, follows it with GetMessage, prints a refusal's details.")
		fmt.Println()
		flags.PrintDefaults()
		fmt.Println()
		fmt.Println("Environment:")
		fmt.Println("  MAILGW_GRPC_ADDR     the gateway's host:port when -addr is not given")
		fmt.Println("  MAILGW_CLIENT_TOKEN  sent as `authorization: Bearer …` to a gateway that requires tokens")
		os.Exit(0)
	}
	if err != nil {
		usageError(err.Error())
	}
	if flags.NArg() > 0 {
		usageError(fmt.Sprintf("unexpected argument %q", flags.Arg(0)))
	}
}

func usageError(problem string) {
	fmt.Fprintf(os.Stderr, "send: %s; -help lists the flags\n", problem)
	os.Exit(2)
}

func envOr(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}

// attachFlags reads each -attach PATH[:TYPE] into an Attachment: the file's name without its directory, its bytes,
// its type.
type attachFlags []*mailgatewayv1.Attachment

func (a *attachFlags) String() string { return fmt.Sprint(len(*a), " files") }

func (a *attachFlags) Set(spec string) error {
	path, contentType := spec, "application/octet-stream"
	if colon := strings.LastIndex(spec, ":"); colon > 0 && strings.Contains(spec[colon+1:], "/") {
		path, contentType = spec[:colon], spec[colon+1:]
	}
	content, err := ioutil.ReadFile(path)
	if err != nil {
		return err
	}
	*a = append(*a, &mailgatewayv1.Attachment{Filename: filepath.Base(path), ContentType: contentType, Content: content})
	return nil
}
