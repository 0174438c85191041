"""The feedback sidecar: SNS notifications of SES events and unsubscribe clicks."""
