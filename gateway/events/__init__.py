"""Events back to the callers: the event log's sequencer and this process's watchers (WatchEvents)."""
