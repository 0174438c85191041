"""The mail gateway: a gRPC front for Amazon SES that never mails a suppressed recipient."""
