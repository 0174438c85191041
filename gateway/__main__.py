"""`python -m gateway` runs the gRPC server."""

from gateway.process.gateway import main

main()
