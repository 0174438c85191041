"""`python -m feedback_http` runs the feedback sidecar."""

from feedback_http.app import main

main()
