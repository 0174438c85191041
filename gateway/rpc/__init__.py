"""The gRPC surface: servicers, authentication, the server and its lifecycle."""
