"""`python -m gateway` runs the gRPC server."""

from gateway.rpc.server import main

main()
