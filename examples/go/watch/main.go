// Command watch follows what happens to this caller's mail (WatchEvents) and resumes, after a restart or a lost
// connection, right after the last event it handled: the cursor of each handled event is stored in a file, and read
// back at start.
//
//	examples/go/run.sh watch -addr 127.0.0.1:50051 -cursor-file events.cursor
//
// Delivery is at-least-once: an event handled but not yet stored may come again after a crash, never one skipped.
// -until-caught-up stops when the stream has caught up with the gateway's log (the first keep-alive);
// MAILGW_CLIENT_TOKEN names the caller, as for send. A wrong flag is one line on stderr and exit code 2.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"io/ioutil"
	"os"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	mailgatewayv1 "example.com/mailgateway/clients/go/mailgateway/v1"
)

func main() {
	flags := flag.NewFlagSet("watch", flag.ContinueOnError)
	addr := flags.String("addr", envOr("MAILGW_GRPC_ADDR", "127.0.0.1:50051"), "the gateway's host:port")
	cursorFile := flags.String("cursor-file", "", "where the last handled event's cursor is kept (required)")
	untilCaughtUp := flags.Bool("until-caught-up", false, "stop once the stream has caught up with the log")
	flags.SetOutput(io.Discard)
	if err := flags.Parse(os.Args[1:]); err == flag.ErrHelp {
		flags.SetOutput(os.Stdout)
		fmt.Println("Usage: watch -cursor-file PATH [-addr HOST:PORT] [-until-caught-up]")
		fmt.Println("Prints this caller's events from the gateway, resuming after the cursor stored in PATH.")
		fmt.Println()
		flags.PrintDefaults()
		os.Exit(0)
	} else if err != nil {
		usageError(err.Error())
	}
	if *cursorFile == "" {
		usageError("-cursor-file is required")
	}

	conn, err := grpc.Dial(*addr, grpc.WithInsecure()) // plaintext, for a gateway on loopback (see send's note)
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(2)
	}
	defer conn.Close()
	ctx := context.Background()
	if token := os.Getenv("MAILGW_CLIENT_TOKEN"); token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	cursor := ""
	if stored, err := ioutil.ReadFile(*cursorFile); err == nil {
		cursor = strings.TrimSpace(string(stored))
	}

	stream, err := mailgatewayv1.NewMailGatewayServiceClient(conn).WatchEvents(
		ctx, &mailgatewayv1.WatchEventsRequest{Cursor: cursor})
	for err == nil {
		var event *mailgatewayv1.WatchEventsResponse
		if event, err = stream.Recv(); err != nil {
			break
		}
		if event.Type == mailgatewayv1.EventType_EVENT_TYPE_UNSPECIFIED {
			// A keep-alive: its cursor is past everything the stream looked at, so storing it makes a restart cheap.
			store(*cursorFile, event.Cursor)
			if *untilCaughtUp {
				return
			}
			continue
		}
		handle(event)
		store(*cursorFile, event.Cursor) // after handling: a crash in between brings this event again, never loses it
	}
	st := status.Convert(err)
	fmt.Fprintf(os.Stderr, "error: %s: %s\n", st.Code(), st.Message())
	for _, detail := range st.Details() {
		if info, ok := detail.(*errdetails.ErrorInfo); ok {
			// CURSOR_EXPIRED: the events after the stored cursor were purged; oldestCursor is where to start.
			fmt.Fprintf(os.Stderr, "  ErrorInfo: reason=%s oldestCursor=%s\n", info.Reason, info.Metadata["oldestCursor"])
		}
	}
	os.Exit(1)
}

func handle(event *mailgatewayv1.WatchEventsResponse) {
	what := "contact=" + event.ContactId
	if event.MessageId != "" {
		what = "message=" + event.MessageId
	}
	change := ""
	if event.PreviousState != mailgatewayv1.MessageState_MESSAGE_STATE_UNSPECIFIED {
		change = fmt.Sprintf(" %s->%s", strings.TrimPrefix(event.PreviousState.String(), "MESSAGE_STATE_"),
			strings.TrimPrefix(event.State.String(), "MESSAGE_STATE_"))
	}
	fmt.Printf("%s %s%s\n", strings.TrimPrefix(event.Type.String(), "EVENT_TYPE_"), what, change)
}

// store replaces the cursor file at once (a rename), so a crash leaves the old cursor or the new one.
func store(path, cursor string) {
	err := ioutil.WriteFile(path+".tmp", []byte(cursor), 0o600)
	if err == nil {
		err = os.Rename(path+".tmp", path)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "error: storing the cursor:", err)
		os.Exit(1)
	}
}

func usageError(problem string) {
	fmt.Fprintf(os.Stderr, "watch: %s; -help lists the flags\n", problem)
	os.Exit(2)
}

func envOr(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}
