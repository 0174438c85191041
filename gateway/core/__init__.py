"""The leaf of the gateway: what every layer uses (settings, logs, metric objects, ids, addresses, errors, the failure
table). It imports nothing of ours from above it."""
