"""The AWS side of feedback, wired by one command: `mailgw aws bootstrap` (configuration set, topic, queues)."""
