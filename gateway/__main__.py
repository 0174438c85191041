"""`python -m gateway` runs the gRPC server."""

from gateway.server import main

main()
