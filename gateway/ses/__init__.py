"""The SES adapter: the SendEmail transport and GetAccount, the account suppression list, and the outbox that stands
in for SES locally."""
