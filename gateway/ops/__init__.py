"""Running it: settings, start-up, logs."""
