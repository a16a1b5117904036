"""Read models built from the log, kept in JetStream KV."""
